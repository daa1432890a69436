//! `follow_up`: a later email about an invoice, in a campaign's next stage or in the tone an
//! escalation set. It takes the data of `send_email` and runs as it does, so it is the same
//! implementation under its own name: the stored name tells a later email from the first in
//! `scheduled_tasks`, and a follow-up that comes too early is moved as a follow-up.

pub use super::send_email::SendEmail as FollowUp;

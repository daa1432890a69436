//! Collection campaigns (seed 000): a set of unpaid invoices emailed on a schedule of stages.
//!
//! Creating a campaign schedules each invoice's first email (`send_email`, the first stage's
//! tone) 30 minutes later. Each email sent schedules the next one after `days_between_emails`,
//! at `send_hour` in the customer's zone, in the next stage's tone; past the last stage an
//! `escalate` task sends in the escalation tone, which later emails keep; `max_attempts` emails
//! end the invoice's part. Payment ends it too: marking the invoice paid cancels its pending
//! tasks in the same transaction, and a campaign with no invoice left completes.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::{QueueConfig, TaskRequest, TaskType};
use crate::schedule::first_instant_at_or_after;
use crate::store::queue::{CampaignRow, MemberRow, NewTask};

/// A campaign with its stages read.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub row: CampaignRow,
    pub stages: Vec<String>,
}

impl Campaign {
    pub fn from_row(row: CampaignRow) -> Campaign {
        let stages = serde_json::from_str(&row.stages).unwrap_or_default();
        Campaign { row, stages }
    }

    /// The task that follows the `sent`-th email to an invoice (its type and data), or `None`
    /// when that invoice's emails end. `tone` is the tone an escalation set.
    pub fn next_after(&self, sent: u32, tone: Option<&str>) -> Option<(TaskType, Value)> {
        if sent >= self.row.max_attempts as u32 {
            return None;
        }
        // An escalated invoice keeps its tone for every later email, stages or not.
        if let (Some(t), true) = (tone, sent > 0) {
            return Some((TaskType::FollowUp, json!({ "tone": t })));
        }
        if sent == 0 || (sent as usize) < self.stages.len() {
            let stage = self
                .stages
                .get(sent as usize)
                .map(String::as_str)
                .unwrap_or("friendly");
            let ty = if sent == 0 {
                TaskType::SendEmail
            } else {
                TaskType::FollowUp
            };
            return Some((ty, json!({ "tone": stage })));
        }
        let e = self.row.escalation_tone.as_ref()?;
        Some((TaskType::Escalate, json!({ "newTone": e })))
    }

    /// The tone the next email to `member` uses.
    pub fn tone_for(&self, member: &MemberRow) -> String {
        if let Some(t) = &member.tone {
            return t.clone();
        }
        let i = (member.attempts.max(0) as usize).min(self.stages.len().saturating_sub(1));
        self.stages
            .get(i)
            .cloned()
            .unwrap_or_else(|| "friendly".into())
    }

    /// The next task of `member`, as a request, when its emails go on; used at resume.
    pub fn resume_request(
        &self,
        member: &MemberRow,
        now: DateTime<Utc>,
        zone: Tz,
        first_after: Duration,
    ) -> Option<TaskRequest> {
        let (ty, data) = self.next_after(member.attempts.max(0) as u32, member.tone.as_deref())?;
        let soonest = now + TimeDelta::from_std(first_after).unwrap_or_default();
        let at = match member.last_sent_at {
            Some(last) => self.follow_up_time(last, zone).max(soonest),
            None => soonest,
        };
        Some(self.request(ty, data, at, member))
    }

    /// When the email after one sent at `last` may go: `days_between_emails` dates later, at
    /// `send_hour` in `zone`.
    pub fn follow_up_time(&self, last: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        let date = last.with_timezone(&zone).date_naive()
            + TimeDelta::days(self.row.days_between_emails as i64);
        at_local_hour(date, self.row.send_hour as u32, zone)
    }

    /// A task of this campaign for `member`'s invoice.
    pub fn request(
        &self,
        ty: TaskType,
        data: Value,
        at: DateTime<Utc>,
        member: &MemberRow,
    ) -> TaskRequest {
        let mut r = TaskRequest::new(ty, at);
        r.data = Some(data);
        r.org_id = Some(self.row.org_id.clone());
        r.campaign_id = Some(self.row.id.clone());
        r.invoice_id = Some(member.invoice_id.clone());
        r.customer_id = Some(member.customer_id.clone());
        r
    }

    /// The resume tasks of every active invoice.
    pub fn resume_tasks(
        &self,
        members: &[MemberRow],
        now: DateTime<Utc>,
        default_zone: Tz,
        queue: &QueueConfig,
    ) -> Vec<NewTask> {
        members
            .iter()
            .filter(|m| m.status == "active")
            .filter_map(|m| {
                self.resume_request(
                    m,
                    now,
                    member_zone(m, default_zone),
                    queue.campaigns.first_email_after,
                )
            })
            .map(|r| r.into_row(queue))
            .collect()
    }
}

/// The customer's zone, or `default` when it has none (or an unknown one).
pub fn member_zone(member: &MemberRow, default: Tz) -> Tz {
    member
        .customer_timezone
        .as_deref()
        .and_then(|z| z.parse().ok())
        .unwrap_or(default)
}

/// `hour`:00 on `date` in `zone`; in a spring-forward gap, the first instant after it.
pub fn at_local_hour(date: NaiveDate, hour: u32, zone: Tz) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour.min(23), 0, 0).unwrap_or_default();
    first_instant_at_or_after(zone, date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(stages: &[&str], max: i32, escalation: Option<&str>) -> Campaign {
        Campaign::from_row(CampaignRow {
            id: uuid::Uuid::nil().to_string(),
            org_id: uuid::Uuid::nil().to_string(),
            name: "c".into(),
            status: "active".into(),
            days_between_emails: 5,
            max_attempts: max,
            stages: serde_json::to_string(stages).unwrap(),
            escalation_tone: escalation.map(String::from),
            send_hour: 10,
            created_at: Utc::now(),
            completed_at: None,
        })
    }

    #[test]
    fn stages_then_escalation_then_the_end() {
        let c = campaign(&["friendly", "firm"], 4, Some("urgent"));
        let tone = |n, t| c.next_after(n, t).map(|(ty, d)| format!("{ty} {d}"));
        assert_eq!(tone(0, None).unwrap(), r#"send_email {"tone":"friendly"}"#);
        assert_eq!(tone(1, None).unwrap(), r#"follow_up {"tone":"firm"}"#);
        assert_eq!(tone(2, None).unwrap(), r#"escalate {"newTone":"urgent"}"#);
        assert_eq!(
            tone(3, Some("urgent")).unwrap(),
            r#"follow_up {"tone":"urgent"}"#
        );
        assert_eq!(tone(4, Some("urgent")), None, "max attempts ends it");
        let quiet = campaign(&["friendly"], 4, None);
        assert_eq!(
            quiet.next_after(1, None),
            None,
            "no escalation tone: the last stage ends it"
        );
    }

    #[test]
    fn follow_ups_land_on_the_send_hour_in_the_customer_zone() {
        let c = campaign(&["friendly"], 3, None);
        let zone: Tz = "America/New_York".parse().unwrap();
        // Sent 2026-03-03 15:20 local; five dates later at 10:00 local, across the DST change
        // of 2026-03-08 (UTC-5 to UTC-4).
        let sent = "2026-03-03T20:20:00Z".parse().unwrap();
        assert_eq!(
            c.follow_up_time(sent, zone).to_rfc3339(),
            "2026-03-08T14:00:00+00:00"
        );
        // 02:30 does not exist on 2026-03-08 in New York: the first instant after the gap.
        let gap = at_local_hour("2026-03-08".parse().unwrap(), 2, zone);
        assert_eq!(gap.to_rfc3339(), "2026-03-08T07:00:00+00:00");
    }
}

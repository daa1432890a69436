# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tickler_global_optspecs
    string join \n c/config= h/help V/version
end

function __fish_tickler_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tickler_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tickler_using_subcommand
    set -l cmd (__fish_tickler_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tickler -n "__fish_tickler_needs_command" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_needs_command" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_needs_command" -s V -l version -d 'Print version'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "run" -d 'Run the daemon: fire every job on its trigger until SIGTERM; SIGHUP reloads the config'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "check" -d 'Validate the config and print each job with its next fire'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "list" -d 'Print the next fire instants of every job, in the job\'s zone and in UTC'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "run-job" -d 'Run jobs now, in this process, recorded with trigger `manual`'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "import" -d 'Import customers, subscriptions or invoices from a CSV file with a header row: every row is checked first, and a file with a bad row imports nothing'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "invoice" -d 'Work on invoices'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "tasks" -d 'The queue of one-off delayed tasks: enqueue, list, cancel, retry, run now'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "campaign" -d 'Collection campaigns: invoices emailed on a schedule of stages until paid'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "contacts" -d 'Opt-outs: addresses that get nothing on a channel (block, unblock, list, import)'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "payments" -d 'Payments received (provider webhooks, `POST /invoices/NUMBER/payments`) and what became of each'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "pause" -d 'Pause a job: its slots are recorded `paused`, not run, by every daemon sharing the database, until `tickler resume`; a reload or restart does not unpause it'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "resume" -d 'Resume a paused job: its next slot runs (the slots it missed stay `paused`; `tickler backfill --only-missed` runs them)'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "backfill" -d 'Run the past slots of a job from `--from` to `--to` (both included), oldest first, each with its own `scheduled_for` and `trigger = \'backfill\'`, under the job\'s overlap policy'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "audit" -d 'The operator actions of the CLI and the console (who, from where, what, when), newest first'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "console" -d 'The users of the operator console (`[http.console]`): add or remove one'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "status" -d 'Each job with its next fire, last run, failure streak and dead-man state (like `systemctl list-timers`), then the queue, today\'s messages and the database'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "demo" -d 'Fill an empty database with a realistic sample: tenants, leases, invoices at every stage'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "history" -d 'Show recorded runs, newest first; `--run ID` shows one run whole (an alert\'s link)'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "migrate" -d 'Create or upgrade the database schema'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "print-config" -d 'Print the shipped, commented example config'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "completions" -d 'Print the completion script of a shell: `tickler completions bash > /etc/bash_completion.d/tickler`'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "man" -d 'Write the manual pages (tickler.1 and one per command) into a directory'
complete -c tickler -n "__fish_tickler_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand run" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand run" -l demo -d 'First fill an empty database with the demo data (as `tickler demo`) and run every enabled job once, so each one shows its work at once'
complete -c tickler -n "__fish_tickler_using_subcommand run" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand check" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand check" -s q -l quiet -d 'Print nothing when the config is valid (errors still go to stderr, and the exit status is 1): for the unit\'s `ExecStartPre=` and `ExecReload=`, which would otherwise put every job in the journal at each start and reload'
complete -c tickler -n "__fish_tickler_using_subcommand check" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand list" -l next -d 'How many fires per job' -r
complete -c tickler -n "__fish_tickler_using_subcommand list" -l from -d 'Count from this RFC 3339 time instead of now, e.g. `2025-03-09T00:00:00-05:00`' -r
complete -c tickler -n "__fish_tickler_using_subcommand list" -l format -r -f -a "table\t''
json\t''"
complete -c tickler -n "__fish_tickler_using_subcommand list" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand list" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand run-job" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand run-job" -l all -d 'Run every enabled job, one after the other'
complete -c tickler -n "__fish_tickler_using_subcommand run-job" -l dry-run -d 'Show what the job would send and change, sending and changing nothing (nothing is recorded in the ledger either)'
complete -c tickler -n "__fish_tickler_using_subcommand run-job" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand import" -l number-prefix -d 'The prefix of invoice numbers assigned to rows without one' -r
complete -c tickler -n "__fish_tickler_using_subcommand import" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand import" -l update -d 'Customers only: a row whose email names a stored customer changes that customer (the file\'s columns; the others are kept) instead of being refused'
complete -c tickler -n "__fish_tickler_using_subcommand import" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and not __fish_seen_subcommand_from mark-paid help" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and not __fish_seen_subcommand_from mark-paid help" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and not __fish_seen_subcommand_from mark-paid help" -f -a "mark-paid" -d 'Record that an open invoice is paid: reminders and escalations stop for it'
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and not __fish_seen_subcommand_from mark-paid help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and __fish_seen_subcommand_from mark-paid" -l paid-at -d 'When it was paid (RFC 3339); default now' -r
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and __fish_seen_subcommand_from mark-paid" -l reference -d 'The payment\'s reference (e.g. the bank or Paystack reference)' -r
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and __fish_seen_subcommand_from mark-paid" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and __fish_seen_subcommand_from mark-paid" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and __fish_seen_subcommand_from help" -f -a "mark-paid" -d 'Record that an open invoice is paid: reminders and escalations stop for it'
complete -c tickler -n "__fish_tickler_using_subcommand invoice; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -f -a "enqueue" -d 'Queue a task to run at a time (`--at`) or after a delay (`--in`)'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -f -a "list" -d 'List tasks: pending ones by time, others most recent first'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -f -a "cancel" -d 'Cancel a pending task'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -f -a "retry" -d 'Run a failed or cancelled task again, now, with its retries reset'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -f -a "run-now" -d 'Make a pending task due now, so a running daemon runs it at once'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and not __fish_seen_subcommand_from enqueue list cancel retry run-now help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l type -d 'send_email, follow_up, check_payment, escalate, pause_campaign, resume_campaign, custom' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l at -d 'When: RFC 3339, or `YYYY-MM-DD HH:MM` in `[daemon].timezone`' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l in -d 'After how long, e.g. `5m`, `2d`; `0s` runs it at once' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l data -d 'The task\'s data, a JSON object, e.g. \'{"tone": "firm"}\' or \'{"handler": "crm"}\'' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l invoice -d 'The invoice (its number) the task is about' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l campaign -d 'The campaign (name or id) the task belongs to' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l priority -d 'Higher runs first among due tasks' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l max-retries -d 'Retries after a failure (default: `[queue.retry]` of the type)' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -l org -d 'The organisation (a UUID) of a multi-tenant install; a campaign\'s task takes the campaign\'s' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from enqueue" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from list" -l status -d 'pending, executing, completed, failed or cancelled' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from list" -l campaign -d 'Only the tasks of this campaign (name or id)' -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from list" -l limit -r
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from list" -l format -r -f -a "table\t''
json\t''"
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from list" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from cancel" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from retry" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from retry" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from run-now" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from run-now" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from help" -f -a "enqueue" -d 'Queue a task to run at a time (`--at`) or after a delay (`--in`)'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from help" -f -a "list" -d 'List tasks: pending ones by time, others most recent first'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a pending task'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from help" -f -a "retry" -d 'Run a failed or cancelled task again, now, with its retries reset'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from help" -f -a "run-now" -d 'Make a pending task due now, so a running daemon runs it at once'
complete -c tickler -n "__fish_tickler_using_subcommand tasks; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -f -a "create" -d 'Create a campaign: each invoice\'s first email goes out 30 minutes later'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -f -a "pause" -d 'Pause a campaign: its pending tasks are cancelled'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -f -a "resume" -d 'Resume a paused campaign: each invoice\'s next email is scheduled again'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -f -a "list" -d 'List campaigns with their active invoices and pending tasks'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -f -a "show" -d 'Show a campaign, its invoices and its pending tasks'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and not __fish_seen_subcommand_from create pause resume list show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l name -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l invoices -d 'Invoice numbers, comma-separated' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l overdue-days -d 'Instead: every open invoice overdue by at least this many days' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l days-between -d 'Days between emails (default `[queue.campaigns]`)' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l max-attempts -d 'Emails per invoice at most' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l stages -d 'The tone of each email in order, comma-separated (template names)' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l escalation-tone -d 'The tone past the last stage; `none` for no escalation' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l send-hour -d 'The hour (0-23) follow-ups go out, in each customer\'s zone' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -l org -d 'The organisation (a UUID) of a multi-tenant install' -r
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from pause" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from resume" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from list" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from show" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a campaign: each invoice\'s first email goes out 30 minutes later'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Pause a campaign: its pending tasks are cancelled'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume a paused campaign: each invoice\'s next email is scheduled again'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from help" -f -a "list" -d 'List campaigns with their active invoices and pending tasks'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a campaign, its invoices and its pending tasks'
complete -c tickler -n "__fish_tickler_using_subcommand campaign; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and not __fish_seen_subcommand_from block unblock list import help" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and not __fish_seen_subcommand_from block unblock list import help" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and not __fish_seen_subcommand_from block unblock list import help" -f -a "block" -d 'Block an address: it gets nothing more on CHANNEL (`email`, `sms`, `whatsapp`, or `*` for every channel); its messages are recorded `suppressed`'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and not __fish_seen_subcommand_from block unblock list import help" -f -a "unblock" -d 'Remove a block. Messages suppressed meanwhile stay suppressed; later ones go out'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and not __fish_seen_subcommand_from block unblock list import help" -f -a "list" -d 'List the blocks, oldest first'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and not __fish_seen_subcommand_from block unblock list import help" -f -a "import" -d 'Block every `channel,address,reason` row of a CSV file with a header row; a file with a bad row blocks nothing'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and not __fish_seen_subcommand_from block unblock list import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from block" -l reason -d 'Why, shown with every message it suppresses' -r
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from block" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from block" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from unblock" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from unblock" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from list" -l format -r -f -a "table\t''
json\t''"
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from list" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from import" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "block" -d 'Block an address: it gets nothing more on CHANNEL (`email`, `sms`, `whatsapp`, or `*` for every channel); its messages are recorded `suppressed`'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "unblock" -d 'Remove a block. Messages suppressed meanwhile stay suppressed; later ones go out'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the blocks, oldest first'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "import" -d 'Block every `channel,address,reason` row of a CSV file with a header row; a file with a bad row blocks nothing'
complete -c tickler -n "__fish_tickler_using_subcommand contacts; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand payments; and not __fish_seen_subcommand_from list help" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand payments; and not __fish_seen_subcommand_from list help" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand payments; and not __fish_seen_subcommand_from list help" -f -a "list" -d 'List payments, newest first'
complete -c tickler -n "__fish_tickler_using_subcommand payments; and not __fish_seen_subcommand_from list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand payments; and __fish_seen_subcommand_from list" -l invoice -d 'Only the payments of this invoice' -r
complete -c tickler -n "__fish_tickler_using_subcommand payments; and __fish_seen_subcommand_from list" -l limit -d 'At most this many (1-100000)' -r
complete -c tickler -n "__fish_tickler_using_subcommand payments; and __fish_seen_subcommand_from list" -l format -r -f -a "table\t''
json\t''"
complete -c tickler -n "__fish_tickler_using_subcommand payments; and __fish_seen_subcommand_from list" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand payments; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand payments; and __fish_seen_subcommand_from help" -f -a "list" -d 'List payments, newest first'
complete -c tickler -n "__fish_tickler_using_subcommand payments; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand pause" -l reason -d 'Why, shown by `list`, `check`, `status`, the console and each `paused` row' -r
complete -c tickler -n "__fish_tickler_using_subcommand pause" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand pause" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand resume" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand resume" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand backfill" -l from -d 'The first instant of the range (RFC 3339)' -r
complete -c tickler -n "__fish_tickler_using_subcommand backfill" -l to -d 'The last instant of the range (RFC 3339), not in the future' -r
complete -c tickler -n "__fish_tickler_using_subcommand backfill" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand backfill" -l only-missed -d 'Run only the slots with no successful run (`succeeded` or `partial`)'
complete -c tickler -n "__fish_tickler_using_subcommand backfill" -l dry-run -d 'List the slots and what the ledger says of each; run nothing'
complete -c tickler -n "__fish_tickler_using_subcommand backfill" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand audit" -l target -d 'Only the actions on this job, task, invoice or address' -r
complete -c tickler -n "__fish_tickler_using_subcommand audit" -l limit -r
complete -c tickler -n "__fish_tickler_using_subcommand audit" -l format -r -f -a "table\t''
json\t''"
complete -c tickler -n "__fish_tickler_using_subcommand audit" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand audit" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand console; and not __fish_seen_subcommand_from add-user remove-user help" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand console; and not __fish_seen_subcommand_from add-user remove-user help" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand console; and not __fish_seen_subcommand_from add-user remove-user help" -f -a "add-user" -d 'Create or replace a console user; the password is read from stdin (one line, at least 12 characters), e.g. `systemd-ask-password | tickler console add-user ana --role operator`. Replacing a user ends their open sessions'
complete -c tickler -n "__fish_tickler_using_subcommand console; and not __fish_seen_subcommand_from add-user remove-user help" -f -a "remove-user" -d 'Remove a console user; their open sessions end at their next request (no restart)'
complete -c tickler -n "__fish_tickler_using_subcommand console; and not __fish_seen_subcommand_from add-user remove-user help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from add-user" -l role -r -f -a "viewer\t'Reads every page, acts on nothing'
operator\t'Also runs, pauses and resumes jobs, retries and cancels tasks, marks invoices paid and blocks addresses'"
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from add-user" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from add-user" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from remove-user" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from remove-user" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "add-user" -d 'Create or replace a console user; the password is read from stdin (one line, at least 12 characters), e.g. `systemd-ask-password | tickler console add-user ana --role operator`. Replacing a user ends their open sessions'
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "remove-user" -d 'Remove a console user; their open sessions end at their next request (no restart)'
complete -c tickler -n "__fish_tickler_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand status" -l name -d 'Only the jobs whose name contains this' -r
complete -c tickler -n "__fish_tickler_using_subcommand status" -l state -d 'Only `enabled`, `disabled` or `paused` jobs' -r -f -a "enabled\t''
disabled\t''
paused\t''"
complete -c tickler -n "__fish_tickler_using_subcommand status" -l page -d 'The page of jobs to show (1 is the first)' -r
complete -c tickler -n "__fish_tickler_using_subcommand status" -l per-page -d 'Jobs per page (1-500)' -r
complete -c tickler -n "__fish_tickler_using_subcommand status" -l format -r -f -a "table\t''
json\t''"
complete -c tickler -n "__fish_tickler_using_subcommand status" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand status" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand demo" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand demo" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand history" -l job -r
complete -c tickler -n "__fish_tickler_using_subcommand history" -l run -d 'One run, by its id, with its error, attempts and metadata' -r
complete -c tickler -n "__fish_tickler_using_subcommand history" -l status -r
complete -c tickler -n "__fish_tickler_using_subcommand history" -l limit -r
complete -c tickler -n "__fish_tickler_using_subcommand history" -l format -r -f -a "table\t''
json\t''"
complete -c tickler -n "__fish_tickler_using_subcommand history" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand history" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand migrate" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand print-config" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand print-config" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand completions" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand completions" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand man" -s c -l config -d 'The config file' -r -F
complete -c tickler -n "__fish_tickler_using_subcommand man" -s h -l help -d 'Print help'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "run" -d 'Run the daemon: fire every job on its trigger until SIGTERM; SIGHUP reloads the config'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "check" -d 'Validate the config and print each job with its next fire'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "list" -d 'Print the next fire instants of every job, in the job\'s zone and in UTC'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "run-job" -d 'Run jobs now, in this process, recorded with trigger `manual`'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "import" -d 'Import customers, subscriptions or invoices from a CSV file with a header row: every row is checked first, and a file with a bad row imports nothing'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "invoice" -d 'Work on invoices'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "tasks" -d 'The queue of one-off delayed tasks: enqueue, list, cancel, retry, run now'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "campaign" -d 'Collection campaigns: invoices emailed on a schedule of stages until paid'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "contacts" -d 'Opt-outs: addresses that get nothing on a channel (block, unblock, list, import)'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "payments" -d 'Payments received (provider webhooks, `POST /invoices/NUMBER/payments`) and what became of each'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "pause" -d 'Pause a job: its slots are recorded `paused`, not run, by every daemon sharing the database, until `tickler resume`; a reload or restart does not unpause it'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "resume" -d 'Resume a paused job: its next slot runs (the slots it missed stay `paused`; `tickler backfill --only-missed` runs them)'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "backfill" -d 'Run the past slots of a job from `--from` to `--to` (both included), oldest first, each with its own `scheduled_for` and `trigger = \'backfill\'`, under the job\'s overlap policy'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "audit" -d 'The operator actions of the CLI and the console (who, from where, what, when), newest first'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "console" -d 'The users of the operator console (`[http.console]`): add or remove one'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "status" -d 'Each job with its next fire, last run, failure streak and dead-man state (like `systemctl list-timers`), then the queue, today\'s messages and the database'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "demo" -d 'Fill an empty database with a realistic sample: tenants, leases, invoices at every stage'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "history" -d 'Show recorded runs, newest first; `--run ID` shows one run whole (an alert\'s link)'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "migrate" -d 'Create or upgrade the database schema'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "print-config" -d 'Print the shipped, commented example config'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "completions" -d 'Print the completion script of a shell: `tickler completions bash > /etc/bash_completion.d/tickler`'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "man" -d 'Write the manual pages (tickler.1 and one per command) into a directory'
complete -c tickler -n "__fish_tickler_using_subcommand help; and not __fish_seen_subcommand_from run check list run-job import invoice tasks campaign contacts payments pause resume backfill audit console status demo history migrate print-config completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from invoice" -f -a "mark-paid" -d 'Record that an open invoice is paid: reminders and escalations stop for it'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from tasks" -f -a "enqueue" -d 'Queue a task to run at a time (`--at`) or after a delay (`--in`)'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from tasks" -f -a "list" -d 'List tasks: pending ones by time, others most recent first'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from tasks" -f -a "cancel" -d 'Cancel a pending task'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from tasks" -f -a "retry" -d 'Run a failed or cancelled task again, now, with its retries reset'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from tasks" -f -a "run-now" -d 'Make a pending task due now, so a running daemon runs it at once'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from campaign" -f -a "create" -d 'Create a campaign: each invoice\'s first email goes out 30 minutes later'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from campaign" -f -a "pause" -d 'Pause a campaign: its pending tasks are cancelled'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from campaign" -f -a "resume" -d 'Resume a paused campaign: each invoice\'s next email is scheduled again'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from campaign" -f -a "list" -d 'List campaigns with their active invoices and pending tasks'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from campaign" -f -a "show" -d 'Show a campaign, its invoices and its pending tasks'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "block" -d 'Block an address: it gets nothing more on CHANNEL (`email`, `sms`, `whatsapp`, or `*` for every channel); its messages are recorded `suppressed`'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "unblock" -d 'Remove a block. Messages suppressed meanwhile stay suppressed; later ones go out'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "list" -d 'List the blocks, oldest first'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from contacts" -f -a "import" -d 'Block every `channel,address,reason` row of a CSV file with a header row; a file with a bad row blocks nothing'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from payments" -f -a "list" -d 'List payments, newest first'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "add-user" -d 'Create or replace a console user; the password is read from stdin (one line, at least 12 characters), e.g. `systemd-ask-password | tickler console add-user ana --role operator`. Replacing a user ends their open sessions'
complete -c tickler -n "__fish_tickler_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "remove-user" -d 'Remove a console user; their open sessions end at their next request (no restart)'

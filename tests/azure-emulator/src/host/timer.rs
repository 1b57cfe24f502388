//! Timer triggers (reference `functions-custom-handler.md` §5.4): an NCRONTAB schedule of six fields
//! (`{second} {minute} {hour} {day} {month} {day-of-week}`, `%setting%` already resolved by the config loader),
//! followed on the emulator's clock, so a test moves the clock to the next occurrence instead of waiting for it. One
//! invocation at a time per function, as the host's singleton lock does: an occurrence missed while one runs (or
//! skipped by a clock jump) fires once, late, with `IsPastDue: true`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::config::FunctionConfig;
use super::invoke::{self, Outcome};
use super::json::Json;
use super::payload::utc_now_text;
use super::process::WorkerState;
use super::runtime::Runtime;
use crate::state::Shared;

/// How often the listener looks at the emulator's clock (real time).
const TICK: Duration = Duration::from_millis(20);
/// How far ahead the next occurrence is searched; a schedule with none within it never fires.
const HORIZON_DAYS: i64 = 366;

/// A parsed NCRONTAB expression: the allowed values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    seconds: BTreeSet<u8>,
    minutes: BTreeSet<u8>,
    hours: BTreeSet<u8>,
    days: BTreeSet<u8>,
    months: BTreeSet<u8>,
    /// 0 = Sunday.
    weekdays: BTreeSet<u8>,
}

impl Schedule {
    /// Six fields of `*`, `n`, `a-b`, each optionally `/step`, comma-separated. Month and day names, `?`, `L`, `W`
    /// and `#` are not emulated.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [seconds, minutes, hours, days, months, weekdays] = fields[..] else {
            return Err(format!(
                "the schedule {text:?} must have six fields (second minute hour day month day-of-week)"
            ));
        };
        Ok(Self {
            seconds: field(seconds, 0, 59, text)?,
            minutes: field(minutes, 0, 59, text)?,
            hours: field(hours, 0, 23, text)?,
            days: field(days, 1, 31, text)?,
            months: field(months, 1, 12, text)?,
            weekdays: field(weekdays, 0, 6, text)?,
        })
    }

    /// The first occurrence strictly after `after`, within a year.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let start = after.replace_nanosecond(0).ok()? + time::Duration::SECOND;
        let mut minute = start.replace_second(0).ok()?;
        let end = start + time::Duration::days(HORIZON_DAYS);
        while minute < end {
            let day_ok = self.days.contains(&minute.day())
                && self.months.contains(&u8::from(minute.month()))
                && self.weekdays.contains(&minute.weekday().number_days_from_sunday());
            if !day_ok {
                minute = (minute + time::Duration::DAY).replace_time(time::Time::MIDNIGHT);
                continue;
            }
            if self.hours.contains(&minute.hour()) && self.minutes.contains(&minute.minute()) {
                let from = if minute < start { start.second() } else { 0 };
                if let Some(second) = self.seconds.range(from..).next() {
                    return minute.replace_second(*second).ok();
                }
            }
            minute += time::Duration::MINUTE;
        }
        None
    }
}

fn field(text: &str, min: u8, max: u8, whole: &str) -> Result<BTreeSet<u8>, String> {
    let bad = || format!("the schedule {whole:?} has an invalid field {text:?} (values {min}-{max})");
    let number = |s: &str| s.parse::<u8>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(bad);
    let mut values = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, step.parse::<u8>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (part, 1),
        };
        let (low, high) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                // `n/step` means from n to the end.
                None if part.contains('/') => (number(range)?, max),
                None => (number(range)?, number(range)?),
            },
        };
        if low > high {
            return Err(bad());
        }
        values.extend((low..=high).step_by(usize::from(step)));
    }
    Ok(values)
}

/// One timer-triggered function.
#[derive(Debug, Clone)]
pub struct Timer {
    pub function: FunctionConfig,
    pub trigger_name: String,
    pub schedule: Schedule,
    pub run_on_startup: bool,
}

/// Every timer-triggered function, its schedule parsed (a bad schedule stops the host, naming the function).
pub fn timers(runtime: &Runtime) -> Result<Vec<Timer>, String> {
    let mut found = Vec::new();
    for function in runtime.config.functions.iter().filter(|f| !f.disabled) {
        let Some(trigger) = function.trigger().filter(|t| t.kind == "timertrigger") else { continue };
        let text =
            trigger.str("schedule").ok_or_else(|| format!("function {}: the timer has no schedule", function.name))?;
        let schedule = Schedule::parse(text).map_err(|e| format!("function {}: {e}", function.name))?;
        found.push(Timer {
            function: function.clone(),
            trigger_name: trigger.name.clone(),
            schedule,
            run_on_startup: trigger.bool("runOnStartup").unwrap_or(false),
        });
    }
    Ok(found)
}

/// Fires the function at each occurrence after `started` (when the host started it: the task itself may first run
/// later), one invocation at a time.
pub async fn run(shared: Arc<Shared>, runtime: Arc<Runtime>, timer: Timer, started: OffsetDateTime) {
    let mut last: Option<OffsetDateTime> = None;
    let mut due = if timer.run_on_startup { Some(started) } else { timer.schedule.next_after(started) };
    loop {
        if matches!(runtime.worker.state(), WorkerState::ShutDown(_) | WorkerState::Stopped) {
            return;
        }
        let now = shared.clock.now();
        let Some(at) = due.filter(|at| *at <= now) else {
            tokio::time::sleep(TICK).await;
            continue;
        };
        let next = timer.schedule.next_after(now);
        // Past due when a later occurrence has also passed, as the host judges a missed one.
        let past_due = timer.schedule.next_after(at).is_some_and(|following| following <= now);
        fire(&shared, &runtime, &timer, last, next, past_due).await;
        last = Some(at);
        due = next;
    }
}

async fn fire(
    shared: &Shared,
    runtime: &Runtime,
    timer: &Timer,
    last: Option<OffsetDateTime>,
    next: Option<OffsetDateTime>,
    past_due: bool,
) {
    let function = &timer.function.name;
    let now = shared.clock.now();
    let time = |t: Option<OffsetDateTime>| t.map_or(Json::Null, |t| Json::str(utc_now_text(t)));
    let info = Json::Object(vec![
        ("Schedule".into(), Json::Object(vec![("AdjustForDST".into(), Json::Bool(true))])),
        (
            "ScheduleStatus".into(),
            Json::Object(vec![
                ("Last".into(), time(last)),
                ("Next".into(), time(next)),
                ("LastUpdated".into(), time(Some(now))),
            ]),
        ),
        ("IsPastDue".into(), Json::Bool(past_due)),
    ]);
    let metadata = Json::Object(vec![(
        "sys".into(),
        Json::Object(vec![
            ("MethodName".into(), Json::str(function)),
            ("UtcNow".into(), Json::str(utc_now_text(now))),
            ("RandGuid".into(), Json::str(Uuid::new_v4().to_string())),
        ]),
    )]);
    let body = Json::Object(vec![
        ("Data".into(), Json::Object(vec![(timer.trigger_name.clone(), info)])),
        ("Metadata".into(), metadata),
    ])
    .compact();
    let invocation_id = Uuid::new_v4();
    let outcome = invoke::invoke(
        &runtime.client,
        &runtime.worker,
        runtime.hold,
        function,
        invocation_id,
        body,
        runtime.config.host.function_timeout,
    )
    .await;
    match outcome {
        Outcome::Success(answer) => {
            runtime.log_answer(function, &answer);
            match runtime.send_service_bus_outputs(&timer.function, &answer, invocation_id).await {
                Ok(_) => runtime.record_ok(),
                Err(message) => runtime.record_failure(function, &message),
            }
        }
        Outcome::Failure(message) => runtime.record_failure(function, &message),
        Outcome::TimedOut => runtime.record_timeout(function),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn next_occurrences() {
        let every_five_minutes = Schedule::parse("0 */5 * * * *").unwrap();
        let at = datetime!(2026-12-03 10:02:30 UTC);
        assert_eq!(every_five_minutes.next_after(at), Some(datetime!(2026-12-03 10:05:00 UTC)));
        assert_eq!(
            every_five_minutes.next_after(datetime!(2026-12-03 10:05:00 UTC)),
            Some(datetime!(2026-12-03 10:10:00 UTC))
        );
        let seconds = Schedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(seconds.next_after(at), Some(datetime!(2026-12-03 10:02:40 UTC)));
        // Mondays at 09:30 (day of week 1), across a month end.
        let mondays = Schedule::parse("0 30 9 * * 1").unwrap();
        assert_eq!(mondays.next_after(datetime!(2026-12-29 10:00 UTC)), Some(datetime!(2027-01-04 09:30 UTC)));
        let list = Schedule::parse("15,45 0 0-1 1 1-12/6 *").unwrap();
        assert_eq!(list.next_after(datetime!(2026-12-03 00:00 UTC)), Some(datetime!(2027-01-01 00:00:15 UTC)));
        // February 30th never comes.
        assert_eq!(Schedule::parse("0 0 0 30 2 *").unwrap().next_after(at), None);
    }

    #[test]
    fn refuses_what_ncrontab_refuses() {
        for bad in [
            "*/5 * * * *",
            "0 60 * * * *",
            "0 * 24 * * *",
            "0 * * 0 * *",
            "0 * * * 13 *",
            "0 * * * * 7",
            "0 5-1 * * * *",
            "0 */0 * * * *",
            "x * * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}

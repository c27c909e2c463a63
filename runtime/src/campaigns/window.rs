//! Calling windows in the lead's local time: a daily window (the country's
//! default narrowed by the campaign's), days of the week and holidays. A
//! number can map to several zones (libphonenumber gives a list): a lead is
//! dialed only at an instant inside its window in every one of them.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// A daily window in local time, `start` inclusive, `end` exclusive, in
/// minutes after midnight (no window crosses midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: write HH:MM-HH:MM (end up to 24:00), start before end, within one day")]
pub struct BadWindow(pub String);

impl std::str::FromStr for Window {
    type Err = BadWindow;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadWindow(s.to_owned());
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str| -> Option<u16> {
            // The day's end, as a window's end: chrono reads no 24:00.
            if t.trim() == "24:00" {
                return Some(24 * 60);
            }
            let t = NaiveTime::parse_from_str(t.trim(), "%H:%M").ok()?;
            u16::try_from(t.hour_minutes()).ok()
        };
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start >= end {
            return Err(bad());
        }
        Ok(Window { start, end })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

trait HourMinutes {
    fn hour_minutes(&self) -> u32;
}

impl HourMinutes for NaiveTime {
    fn hour_minutes(&self) -> u32 {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
}

impl Window {
    /// Both windows at once; `None` when they do not meet.
    pub fn narrowed(self, by: Option<Window>) -> Option<Window> {
        let Some(by) = by else { return Some(self) };
        let w = Window {
            start: self.start.max(by.start),
            end: self.end.min(by.end),
        };
        (w.start < w.end).then_some(w)
    }
}

/// The days and window a lead may be called in its own zone(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub window: Window,
    /// Bit `n` set: `Weekday::num_days_from_monday() == n` is a calling day.
    pub days: u8,
    /// Local dates with no calls.
    pub holidays: Vec<NaiveDate>,
}

pub const EVERY_DAY: u8 = 0b111_1111;

/// Reads `mon`…`sun` (or full English names) into a day mask.
pub fn day_mask(days: &[String]) -> Result<u8, String> {
    let mut mask = 0u8;
    for d in days {
        let day: Weekday = d
            .trim()
            .parse()
            .map_err(|_| format!("{d:?} is not a day of the week (mon … sun)"))?;
        mask |= 1 << day.num_days_from_monday();
    }
    Ok(mask)
}

/// How far ahead a window is looked for before the lead is reported as
/// having none (a calendar with every day a holiday, say).
const HORIZON_DAYS: i64 = 15;

impl Calendar {
    fn day_open(&self, date: NaiveDate) -> bool {
        self.days & (1 << date.weekday().num_days_from_monday()) != 0
            && !self.holidays.contains(&date)
    }

    /// The earliest instant at or after `t` inside the window in `zone`.
    fn open_from(&self, t: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let mut date = t.with_timezone(&zone).date_naive();
        for _ in 0..HORIZON_DAYS {
            if self.day_open(date) {
                let start = local(zone, date, self.window.start)?;
                let end = local(zone, date, self.window.end)?;
                if t < start {
                    return Some(start);
                }
                if t < end {
                    return Some(t);
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// The earliest instant at or after `now` inside the window in every
    /// zone of `zones`; `None` when there is none within the horizon (or
    /// `zones` is empty: a lead whose zone is unknown is never dialed).
    pub fn next_open(&self, now: DateTime<Utc>, zones: &[Tz]) -> Option<DateTime<Utc>> {
        if zones.is_empty() {
            return None;
        }
        let mut t = now;
        // Each pass moves `t` to the next opening of a zone that is shut:
        // a fixed point is an instant every zone is open at.
        for _ in 0..(zones.len() * HORIZON_DAYS as usize * 2) {
            let mut moved = false;
            for zone in zones {
                let open = self.open_from(t, *zone)?;
                if open > t {
                    t = open;
                    moved = true;
                }
            }
            if !moved {
                return Some(t);
            }
            if t - now > Duration::days(HORIZON_DAYS) {
                return None;
            }
        }
        None
    }
}

/// `minutes` after local midnight of `date` in `zone` as UTC. In a DST gap
/// (the local time does not exist) the first instant after it.
fn local(zone: Tz, date: NaiveDate, minutes: u16) -> Option<DateTime<Utc>> {
    let naive = date.and_hms_opt(0, 0, 0)? + Duration::minutes(i64::from(minutes));
    for shift in [0, 30, 60, 90, 120] {
        if let Some(t) = zone
            .from_local_datetime(&(naive + Duration::minutes(shift)))
            .earliest()
        {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

/// IANA names (`America/New_York&America/Chicago`, as libphonenumber lists
/// them) into zones; `Etc/Unknown` and names chrono-tz does not know drop out.
pub fn zones(names: &str) -> Vec<Tz> {
    names
        .split('&')
        .filter_map(|n| n.trim().parse::<Tz>().ok())
        .filter(|z| z.name() != "Etc/Unknown")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cal(window: &str) -> Calendar {
        Calendar {
            window: window.parse().unwrap(),
            days: EVERY_DAY,
            holidays: vec![],
        }
    }

    #[test]
    fn windows_read_and_narrow() {
        let w: Window = "08:00-21:00".parse().unwrap();
        assert_eq!((w.start, w.end), (480, 1260));
        assert_eq!(w.to_string(), "08:00-21:00");
        assert!("21:00-08:00".parse::<Window>().is_err());
        assert!("9-17".parse::<Window>().is_err());
        assert!("08:00–21:00".parse::<Window>().is_err(), "an en dash");
        assert!("".parse::<Window>().is_err());
        assert_eq!("00:00-24:00".parse::<Window>().unwrap().end, 1440);
        assert!("24:00-24:00".parse::<Window>().is_err());
        let narrow = w.narrowed(Some("10:00-22:00".parse().unwrap())).unwrap();
        assert_eq!(narrow.to_string(), "10:00-21:00");
        assert_eq!(w.narrowed(Some("21:00-22:00".parse().unwrap())), None);
    }

    #[test]
    fn a_lead_is_called_inside_its_own_local_window() {
        let c = cal("08:00-21:00");
        let ny = [chrono_tz::America::New_York];
        let kolkata = [chrono_tz::Asia::Kolkata];
        // 13:00 UTC is 08:00 in New York (EST) and 18:30 in Kolkata.
        let now = at("2026-11-27T13:00:00Z");
        assert_eq!(c.next_open(now, &ny), Some(now));
        assert_eq!(c.next_open(now, &kolkata), Some(now));
        // 02:00 UTC: 21:00 in New York (shut), 07:30 in Kolkata (shut).
        let night = at("2026-11-27T02:00:00Z");
        assert_eq!(c.next_open(night, &ny), Some(at("2026-11-27T13:00:00Z")));
        assert_eq!(
            c.next_open(night, &kolkata),
            Some(at("2026-11-27T02:30:00Z"))
        );
        // The end is exclusive.
        assert_eq!(
            c.next_open(at("2026-11-28T01:59:59Z"), &ny),
            Some(at("2026-11-28T01:59:59Z"))
        );
    }

    #[test]
    fn several_zones_need_an_instant_open_in_all() {
        let c = cal("09:00-17:00");
        let both = [
            chrono_tz::America::New_York,
            chrono_tz::America::Los_Angeles,
        ];
        // 14:00 UTC = 09:00 New York, 06:00 Los Angeles → wait for 09:00 LA = 17:00 UTC.
        assert_eq!(
            c.next_open(at("2026-11-27T14:00:00Z"), &both),
            Some(at("2026-11-27T17:00:00Z"))
        );
        // No instant is inside 09-12 in both Kolkata and New York.
        let apart = [chrono_tz::Asia::Kolkata, chrono_tz::America::New_York];
        assert_eq!(
            cal("09:00-12:00").next_open(at("2026-11-27T14:00:00Z"), &apart),
            None
        );
        assert_eq!(c.next_open(at("2026-11-27T14:00:00Z"), &[]), None);
    }

    #[test]
    fn days_and_holidays_are_skipped_in_local_dates() {
        let mut c = cal("09:00-17:00");
        c.days = day_mask(&[
            "mon".into(),
            "tue".into(),
            "wed".into(),
            "thu".into(),
            "friday".into(),
        ])
        .unwrap();
        let ny = [chrono_tz::America::New_York];
        // Saturday 2026-11-28 10:00 in New York → Monday 09:00 (EST, UTC-5).
        assert_eq!(
            c.next_open(at("2026-11-28T15:00:00Z"), &ny),
            Some(at("2026-11-30T14:00:00Z"))
        );
        c.holidays = vec![NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()];
        assert_eq!(
            c.next_open(at("2026-11-28T15:00:00Z"), &ny),
            Some(at("2026-12-01T14:00:00Z"))
        );
        // Friday 23:30 UTC is Saturday 05:00 in Kolkata: shut until Monday.
        let kolkata = [chrono_tz::Asia::Kolkata];
        c.holidays.clear();
        assert_eq!(
            c.next_open(at("2026-11-27T23:30:00Z"), &kolkata),
            Some(at("2026-11-30T03:30:00Z"))
        );
        assert!(day_mask(&["someday".into()]).is_err());
        c.days = 0;
        assert_eq!(c.next_open(at("2026-11-27T23:30:00Z"), &kolkata), None);
    }

    #[test]
    fn dst_changes_follow_the_local_clock() {
        let c = cal("08:00-21:00");
        let ny = [chrono_tz::America::New_York];
        // 2026-03-08: clocks go forward; 08:00 EDT is 12:00 UTC (not 13:00).
        assert_eq!(
            c.next_open(at("2026-03-08T05:00:00Z"), &ny),
            Some(at("2026-03-08T12:00:00Z"))
        );
        // A window starting in the gap (02:30 does not exist) opens at 03:00.
        let gap = cal("02:30-04:00");
        assert_eq!(
            gap.next_open(at("2026-03-08T05:00:00Z"), &ny),
            Some(at("2026-03-08T07:00:00Z"))
        );
    }

    #[test]
    fn zone_lists_read_as_libphonenumber_writes_them() {
        assert_eq!(zones("America/New_York&America/Chicago").len(), 2);
        assert!(zones("Etc/Unknown").is_empty());
        assert!(zones("Mars/Olympus").is_empty());
        assert!(zones("").is_empty());
    }
}

//! What a campaign's own work costs, measured with criterion:
//!
//! - `campaigns/parse_10k_csv`: a 10,000-row lead file (CSV, national and
//!   E.164 numbers, a Devanagari field, 1% bad rows, 1% duplicates) read into
//!   leads — numbers into E.164, zones from libphonenumber — the CPU part of
//!   an import (the database's is in the README's end-to-end figure);
//! - `campaigns/next_open`: one lead's next calling instant in two zones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks: a panic is the failure report

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hark_runtime::campaigns::import::{Format, parse};
use hark_runtime::campaigns::window::{Calendar, EVERY_DAY};

fn file() -> String {
    let mut csv = String::from("phone,first_name,company,plan,priority\n");
    for i in 0..10_000u32 {
        if i % 100 == 99 {
            csv.push_str(&format!("555-01{i:02},Bad {i},Acme,pro,\n"));
        } else if i % 100 == 49 {
            csv.push_str(&format!("+1 212 555 {:04},Again,Acme,gold,3\n", i - 1));
        } else if i % 2 == 0 {
            csv.push_str(&format!("(212) 555-{i:04},नाम {i},Acme & Co,pro,\n"));
        } else {
            csv.push_str(&format!("+1 212 555 {i:04},Name {i},Acme & Co,pro,\n"));
        }
    }
    csv
}

fn import(c: &mut Criterion) {
    let text = file();
    let mut g = c.benchmark_group("campaigns");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("parse_10k_csv", |b| {
        b.iter(|| {
            let parsed = parse(black_box(&text), Format::Csv, "US");
            assert_eq!(parsed.errors.len(), 100);
            parsed
        })
    });
    g.finish();
}

fn windows(c: &mut Criterion) {
    let cal = Calendar {
        window: "09:00-17:00".parse().unwrap(),
        days: EVERY_DAY,
        holidays: vec![],
    };
    let zones = [
        chrono_tz::America::New_York,
        chrono_tz::America::Los_Angeles,
    ];
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T14:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    c.bench_function("campaigns/next_open", |b| {
        b.iter(|| cal.next_open(black_box(now), &zones))
    });
}

criterion_group!(benches, import, windows);
criterion_main!(benches);

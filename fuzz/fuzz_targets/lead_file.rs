//! Any lead file, CSV or JSON, in any region: leads and row errors, never a
//! panic; every lead has an E.164 number, each number once, and every row is
//! accounted for (a lead, an error, or merged).
#![no_main]

use hark_runtime::campaigns::import::{Format, parse};
use hark_runtime::campaigns::spec::CampaignSpec;
use hark_runtime::campaigns::window::Window;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Csv, Format::Json] {
        for region in ["US", "IN", "GB"] {
            let p = parse(text, format, region);
            let mut seen = std::collections::HashSet::new();
            for lead in &p.leads {
                assert!(lead.number.starts_with('+'), "{lead:?}");
                assert!(seen.insert(lead.number.clone()), "{lead:?} twice");
            }
        }
    }
    let _ = text.parse::<Window>();
    if let Ok(spec) = serde_json::from_str::<CampaignSpec>(text) {
        let _ = spec.validate();
        let _ = spec.calendar(Window { start: 480, end: 1260 });
    }
});

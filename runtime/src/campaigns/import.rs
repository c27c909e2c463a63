//! Lead files (CSV with a header row, or a JSON array of objects) into
//! leads: numbers into E.164 in the list's region, the zone from an
//! explicit column or the number, custom fields kept for the prompt
//! (`{caller.NAME}`). Bad rows are reported by row, field and reason;
//! the good ones go on. Rows with the same number merge (later values win).

use std::collections::{BTreeMap, HashMap};

use crate::outbound::phone;

/// Columns Hark reads itself; every other column is a custom field.
const NUMBER: [&str; 3] = ["phone", "number", "phone_number"];
const TIME_ZONE: [&str; 2] = ["time_zone", "timezone"];
const PRIORITY: &str = "priority";
const CONSENT: &str = "consent";
const OWNER: &str = "owner";

/// At most this many custom fields per lead, each value this long.
pub const MAX_FIELDS: usize = 50;
pub const MAX_VALUE_CHARS: usize = 1000;

/// One lead read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadRow {
    /// Where it was first seen (CSV line, or JSON item from 1).
    pub row: usize,
    pub number: String,
    pub region: String,
    /// IANA names joined by `&`; empty: unknown (never dialed).
    pub time_zone: String,
    pub priority: i64,
    /// `Some(false)`: the lead said no; `None`: not given.
    pub consent: Option<bool>,
    /// An owner pool (`ai`, or an agent pool's name); empty: by rules.
    pub owner: String,
    pub fields: BTreeMap<String, String>,
}

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = LeadRowError)]
pub struct RowError {
    /// CSV line (the header is line 1), or JSON item from 1.
    pub row: usize,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Parsed {
    /// The file as a whole cannot be read (no phone column, not a JSON
    /// array): nothing in it is imported.
    pub unreadable: Option<String>,
    pub leads: Vec<LeadRow>,
    pub errors: Vec<RowError>,
    /// Rows merged into an earlier row with the same number.
    pub merged: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

fn error(row: usize, field: &str, reason: impl Into<String>) -> RowError {
    RowError {
        row,
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A custom field's name: what `{caller.NAME}` can name.
fn field_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The lead in one row's (column, value) pairs.
fn lead(row: usize, cells: Vec<(String, String)>, region: &str) -> Result<LeadRow, RowError> {
    let mut number = None;
    let mut lead = LeadRow {
        row,
        number: String::new(),
        region: String::new(),
        time_zone: String::new(),
        priority: 0,
        consent: None,
        owner: String::new(),
        fields: BTreeMap::new(),
    };
    let mut zone = None;
    for (column, value) in cells {
        let value = value.trim().to_owned();
        let key = column.trim().to_lowercase();
        if NUMBER.contains(&key.as_str()) {
            number = Some(value);
        } else if TIME_ZONE.contains(&key.as_str()) {
            if !value.is_empty() {
                zone = Some(value);
            }
        } else if key == PRIORITY {
            if !value.is_empty() {
                lead.priority = value
                    .parse::<i64>()
                    .ok()
                    .filter(|p| (-1000..=1000).contains(p))
                    .ok_or_else(|| error(row, PRIORITY, "an integer from -1000 to 1000"))?;
            }
        } else if key == CONSENT {
            lead.consent = match value.to_lowercase().as_str() {
                "" => None,
                "true" | "yes" | "y" | "1" => Some(true),
                "false" | "no" | "n" | "0" => Some(false),
                _ => return Err(error(row, CONSENT, "yes or no (true/false, 1/0)")),
            };
        } else if key == OWNER {
            lead.owner = value;
        } else if !value.is_empty() {
            if !field_name_ok(&key) {
                return Err(error(
                    row,
                    &column.chars().take(40).collect::<String>(),
                    "a field name is 1 to 40 of a-z, 0-9 and _",
                ));
            }
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(error(
                    row,
                    &key,
                    format!("at most {MAX_VALUE_CHARS} characters"),
                ));
            }
            lead.fields.insert(key, value);
        }
    }
    if lead.fields.len() > MAX_FIELDS {
        return Err(error(
            row,
            "fields",
            format!("at most {MAX_FIELDS} custom fields"),
        ));
    }
    let raw = number
        .filter(|n| !n.is_empty())
        .ok_or_else(|| error(row, "phone", "missing"))?;
    if region.parse::<phonenumber::country::Id>().is_err() && !raw.starts_with('+') {
        return Err(error(
            row,
            "phone",
            format!("{raw:?} has no + and region {region:?} is not one libphonenumber knows"),
        ));
    }
    lead.number =
        phone::e164(&raw, region.parse().ok()).map_err(|e| error(row, "phone", e.to_string()))?;
    let (number_region, number_zones) = phone::locate(&lead.number);
    lead.region = number_region;
    lead.time_zone = match zone {
        Some(z) => {
            let known = super::window::zones(&z);
            if known.is_empty() || z.contains('&') {
                return Err(error(
                    row,
                    "time_zone",
                    format!("{z:?} is not an IANA time zone (e.g. America/New_York)"),
                ));
            }
            z
        }
        None => number_zones,
    };
    Ok(lead)
}

/// Reads a file's text. `region`: where national numbers are read.
pub fn parse(text: &str, format: Format, region: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let rows = match format {
        Format::Csv => csv_rows(text),
        Format::Json => json_rows(text),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(why) => {
            parsed.unreadable = Some(why);
            return parsed;
        }
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let lead = row.and_then(|(n, cells)| lead(n, cells, region));
        match lead {
            Ok(lead) => match seen.get(&lead.number) {
                Some(&i) => {
                    parsed.merged += 1;
                    if let Some(first) = parsed.leads.get_mut(i) {
                        merge(first, lead);
                    }
                }
                None => {
                    seen.insert(lead.number.clone(), parsed.leads.len());
                    parsed.leads.push(lead);
                }
            },
            Err(e) => parsed.errors.push(e),
        }
    }
    parsed
}

/// `later` into `first`: what the later row gives wins, the rest stays.
pub fn merge(first: &mut LeadRow, later: LeadRow) {
    first.fields.extend(later.fields);
    if later.priority != 0 {
        first.priority = later.priority;
    }
    if later.consent.is_some() {
        first.consent = later.consent;
    }
    if !later.owner.is_empty() {
        first.owner = later.owner;
    }
    if !later.time_zone.is_empty() {
        first.time_zone = later.time_zone;
    }
}

type Rows = Vec<Result<(usize, Vec<(String, String)>), RowError>>;

fn csv_rows(text: &str) -> Result<Rows, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_owned).collect(),
        Err(e) => return Err(format!("the header row: {e}")),
    };
    if !header
        .iter()
        .any(|h| NUMBER.contains(&h.trim().to_lowercase().as_str()))
    {
        return Err("the header row has no phone column (phone, number or phone_number)".into());
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        match record {
            // `#` comments by hand: the csv crate's own do not count lines.
            Ok(r) if r.get(0).is_some_and(|c| c.starts_with('#')) => {}
            Ok(r) if r.iter().all(str::is_empty) => {}
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line() as usize);
                if r.len() > header.len() {
                    rows.push(Err(error(
                        line,
                        "row",
                        format!("{} cells, the header has {}", r.len(), header.len()),
                    )));
                    continue;
                }
                let cells = header
                    .iter()
                    .cloned()
                    .zip(r.iter().map(str::to_owned))
                    .collect();
                rows.push(Ok((line, cells)));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                rows.push(Err(error(line, "row", e.to_string())));
            }
        }
    }
    Ok(rows)
}

fn json_rows(text: &str) -> Result<Rows, String> {
    let items: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(_) => return Err("the body is not a JSON array of objects".into()),
        Err(e) => return Err(format!("the body is not JSON: {e}")),
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let row = i + 1;
            let serde_json::Value::Object(map) = item else {
                return Err(error(row, "row", "not an object"));
            };
            map.into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k, s)),
                    serde_json::Value::Number(n) => Ok((k, n.to_string())),
                    serde_json::Value::Bool(b) => Ok((k, b.to_string())),
                    serde_json::Value::Null => Ok((k, String::new())),
                    _ => Err(error(row, &k, "a string, number or boolean")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|cells| (row, cells))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_file_gives_leads_and_reports_bad_rows_by_line() {
        let text = "phone,name,time_zone,priority,consent,plan\n\
                    415-555-0100,Priya,,5,yes,gold\n\
                    +91 98765 43210,राहुल,,,,\n\
                    not a number,Bad,,,,\n\
                    +1 415 555 0100,Priya S,America/New_York,,,\n\
                    +14155550101,X,Mars/Base,,,\n\
                    +14155550102,Y,,high,,\n\
                    # a comment\n\
                    +14155550103,Z,,,maybe,\n";
        let p = parse(text, Format::Csv, "US");
        assert_eq!(p.leads.len(), 2, "{p:?}");
        assert_eq!(p.merged, 1);
        let priya = &p.leads[0];
        assert_eq!(priya.number, "+14155550100");
        assert_eq!(priya.row, 2);
        assert_eq!(priya.fields["name"], "Priya S", "the later row wins");
        assert_eq!(priya.fields["plan"], "gold", "and the rest stays");
        assert_eq!(priya.time_zone, "America/New_York");
        assert_eq!((priya.priority, priya.consent), (5, Some(true)));
        let rahul = &p.leads[1];
        assert_eq!(rahul.fields["name"], "राहुल");
        assert_eq!(
            (rahul.region.as_str(), rahul.time_zone.as_str()),
            ("IN", "Asia/Calcutta")
        );
        let errs: Vec<_> = p.errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(
            errs,
            [
                (4, "phone"),
                (6, "time_zone"),
                (7, "priority"),
                (9, "consent")
            ]
        );
    }

    #[test]
    fn json_items_are_read_like_rows() {
        let text = r#"[{"number": "+14155550100", "name": "Ann", "age": 41, "vip": true},
                       {"number": "+14155550100", "plan": null},
                       {"number": ["x"]}, 7, {"name": "no number"},
                       {"number": "+14155550104", "Bad Field": "x"}]"#;
        let p = parse(text, Format::Json, "US");
        assert_eq!(p.leads.len(), 1);
        assert_eq!(p.leads[0].fields["age"], "41");
        assert_eq!(p.leads[0].fields["vip"], "true");
        assert_eq!(p.merged, 1);
        let errs: Vec<_> = p.errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(
            errs,
            [(3, "number"), (4, "row"), (5, "phone"), (6, "Bad Field")]
        );
        assert!(parse("{}", Format::Json, "US").unreadable.is_some());
        assert!(parse("[", Format::Json, "US").unreadable.is_some());
    }

    #[test]
    fn a_csv_without_a_phone_column_is_unreadable() {
        let p = parse("name,plan\nAnn,gold\n", Format::Csv, "US");
        assert_eq!(p.leads.len(), 0);
        assert!(p.unreadable.unwrap().contains("no phone column"));
        let p = parse("phone\n+14155550100,extra\n", Format::Csv, "US");
        assert_eq!(p.errors[0].field, "row");
    }
}

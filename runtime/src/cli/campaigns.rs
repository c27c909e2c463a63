//! `hark leads` and `hark campaign`, through a running node's admin API.
//! A lead file is sent in pieces under the API's body limit, cut on record
//! boundaries, and the API's row numbers are turned back into the file's.

use clap::Subcommand;
use reqwest::Method;

use super::{ApiArgs, answered, api_request};

#[derive(Subcommand)]
pub enum LeadsCommand {
    /// Import a CSV (header row with a phone column) or JSON (array of
    /// objects) file into a list; bad rows are reported with their line.
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        list: String,
        /// Where numbers without + are read; remembered as the list's
        /// [default: the list's, else the node's outbound.default_region]
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A list's leads.
    List {
        #[arg(long)]
        list: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Define (or redefine, while a draft) a campaign from a JSON or TOML file.
    Define {
        name: String,
        file: std::path::PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// draft → running.
    Start {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// running → paused.
    Pause {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// paused → running.
    Resume {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End it now.
    Complete {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Its state and where its leads are.
    Status {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Analytics per day.
    Stats {
        name: String,
        /// First day, YYYY-MM-DD
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD
        #[arg(long)]
        to: Option<String>,
        /// CSV instead of JSON
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Bytes of rows per request (the API's default body limit is 64 KiB).
const PIECE_BYTES: usize = 48 * 1024;

/// A piece of a lead file: its body, and how its rows map to the file's.
struct Piece {
    body: String,
    /// CSV: the file line of the piece's line 2 (its first record).
    /// JSON: the file item of the piece's item 1.
    first: usize,
}

/// Cuts a CSV file into pieces on record boundaries, each with the header.
fn csv_pieces(text: &str) -> anyhow::Result<Vec<Piece>> {
    let text = text.trim_start_matches('\u{feff}');
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut starts = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let pos = reader.position().clone();
        match reader.read_record(&mut record) {
            Ok(true) => starts.push((pos.byte() as usize, pos.line() as usize)),
            Ok(false) => break,
            // The API reports a broken row with its line; keep going.
            Err(_) => starts.push((pos.byte() as usize, pos.line() as usize)),
        }
    }
    anyhow::ensure!(!starts.is_empty(), "the file is empty");
    let header_end = starts.get(1).map_or(text.len(), |s| s.0);
    let header = text.get(..header_end).unwrap_or_default();
    let header = if header.ends_with('\n') {
        header.to_owned()
    } else {
        format!("{header}\n")
    };
    let mut pieces = Vec::new();
    let mut i = 1;
    while i < starts.len() {
        let (from, line) = starts[i];
        let mut j = i + 1;
        while j < starts.len() && starts[j].0 - from < PIECE_BYTES {
            j += 1;
        }
        let to = starts.get(j).map_or(text.len(), |s| s.0);
        pieces.push(Piece {
            body: format!("{header}{}", text.get(from..to).unwrap_or_default()),
            first: line,
        });
        i = j;
    }
    Ok(pieces)
}

fn json_pieces(text: &str) -> anyhow::Result<Vec<Piece>> {
    let items: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("not a JSON array of objects: {e}"))?;
    let mut pieces = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    let mut first = 1;
    for (i, item) in items.into_iter().enumerate() {
        let len = item.to_string().len();
        if size + len > PIECE_BYTES && !current.is_empty() {
            pieces.push(Piece {
                body: serde_json::Value::Array(std::mem::take(&mut current)).to_string(),
                first,
            });
            size = 0;
            first = i + 1;
        }
        size += len + 1;
        current.push(item);
    }
    if !current.is_empty() {
        pieces.push(Piece {
            body: serde_json::Value::Array(current).to_string(),
            first,
        });
    }
    Ok(pieces)
}

async fn import(
    file: &std::path::Path,
    list: &str,
    region: Option<&str>,
    api: &ApiArgs,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let json = file.extension().is_some_and(|e| e == "json");
    let pieces = if json {
        json_pieces(&text)?
    } else {
        csv_pieces(&text)?
    };
    let mut url = format!(
        "{}/api/v1/lists/{list}/leads",
        api.api.trim_end_matches('/')
    );
    if let Some(r) = region {
        url.push_str(&format!("?region={r}"));
    }
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let (mut created, mut merged, mut duplicates, mut bad, mut unzoned) = (0, 0, 0, 0, 0);
    let mut read_in = String::from("?");
    for piece in pieces {
        let res = client
            .post(&url)
            .bearer_auth(&api.token)
            .header(
                "content-type",
                if json { "application/json" } else { "text/csv" },
            )
            .body(piece.body)
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if status != 200 && status != 201 {
            return answered(status, &body);
        }
        created += body["created"].as_u64().unwrap_or(0);
        merged += body["merged"].as_u64().unwrap_or(0);
        duplicates += body["duplicates"].as_u64().unwrap_or(0);
        read_in = body["region"].as_str().unwrap_or("?").to_owned();
        // A piece's row n is the file's: CSV line first + n - 2, JSON item first + n - 1.
        let place = |row: u64| {
            let row = row as usize;
            if json {
                piece.first + row.saturating_sub(1)
            } else {
                piece.first + row.saturating_sub(2)
            }
        };
        for e in body["errors"].as_array().into_iter().flatten() {
            bad += 1;
            eprintln!(
                "{}:{}: {}: {}",
                file.display(),
                place(e["row"].as_u64().unwrap_or(0)),
                e["field"].as_str().unwrap_or("?"),
                e["reason"].as_str().unwrap_or("unreadable")
            );
        }
        for row in body["unknown_time_zone"].as_array().into_iter().flatten() {
            unzoned += 1;
            eprintln!(
                "{}:{}: time_zone: unknown (imported, not dialed until one is given)",
                file.display(),
                place(row.as_u64().unwrap_or(0))
            );
        }
    }
    eprintln!(
        "list {list}: {created} leads created, {merged} merged into leads already there, {duplicates} duplicate rows merged, {bad} rows not imported, {unzoned} without a time zone; numbers without + read in {read_in} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(created + merged > 0 || bad == 0, "nothing imported");
    Ok(())
}

pub async fn leads(command: LeadsCommand) -> anyhow::Result<()> {
    match command {
        LeadsCommand::Import {
            file,
            list,
            region,
            api,
        } => import(&file, &list, region.as_deref(), &api).await,
        LeadsCommand::List { list, limit, api } => {
            let path = format!("/lists/{list}/leads?limit={limit}");
            let (status, body) = api_request(&api, Method::GET, &path, None).await?;
            answered(status, &body)
        }
    }
}

pub async fn campaign(command: CampaignCommand) -> anyhow::Result<()> {
    let (method, path, body, api) = match command {
        CampaignCommand::Define { name, file, api } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let spec: serde_json::Value = if file.extension().is_some_and(|e| e == "toml") {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            } else {
                serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            };
            (Method::PUT, format!("/campaigns/{name}"), Some(spec), api)
        }
        CampaignCommand::Start { name, api } => {
            (Method::POST, format!("/campaigns/{name}/start"), None, api)
        }
        CampaignCommand::Pause { name, api } => {
            (Method::POST, format!("/campaigns/{name}/pause"), None, api)
        }
        CampaignCommand::Resume { name, api } => {
            (Method::POST, format!("/campaigns/{name}/resume"), None, api)
        }
        CampaignCommand::Complete { name, api } => (
            Method::POST,
            format!("/campaigns/{name}/complete"),
            None,
            api,
        ),
        CampaignCommand::Status { name, api } => {
            (Method::GET, format!("/campaigns/{name}"), None, api)
        }
        CampaignCommand::Stats {
            name,
            from,
            to,
            csv,
            api,
        } => {
            let mut q = vec![format!("format={}", if csv { "csv" } else { "json" })];
            q.extend(from.map(|f| format!("from={f}")));
            q.extend(to.map(|t| format!("to={t}")));
            let path = format!("/campaigns/{name}/stats?{}", q.join("&"));
            let (status, body) = api_request(&api, Method::GET, &path, None).await?;
            if csv
                && (200..300).contains(&status)
                && let serde_json::Value::String(text) = &body
            {
                print!("{text}");
                return Ok(());
            }
            return answered(status, &body);
        }
    };
    let (status, answer) = api_request(&api, method, &path, body).await?;
    answered(status, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_files_are_cut_on_record_boundaries_with_their_header() {
        let mut text = String::from("phone,note\n");
        for i in 0..3000 {
            text.push_str(&format!(
                "+1415555{i:04},\"a note, with a comma\nand a second line\"\n"
            ));
        }
        let pieces = csv_pieces(&text).unwrap();
        assert!(pieces.len() > 1);
        assert_eq!(pieces[0].first, 2);
        let mut records = 0;
        for p in &pieces {
            assert!(p.body.starts_with("phone,note\n"));
            assert!(p.body.len() < 64 * 1024);
            let mut r = csv::Reader::from_reader(p.body.as_bytes());
            records += r.records().filter(|r| r.is_ok()).count();
        }
        assert_eq!(records, 3000);
        // Each record spans two lines: piece k starts at line 2 + 2 * (records before it).
        let second_first = pieces[1].first;
        assert_eq!((second_first - 2) % 2, 0);
    }

    #[test]
    fn json_files_are_cut_by_items() {
        let items: Vec<_> = (0..5000)
            .map(|i| serde_json::json!({"phone": format!("+1415555{i:04}"), "name": "x"}))
            .collect();
        let pieces = json_pieces(&serde_json::Value::Array(items).to_string()).unwrap();
        assert!(pieces.len() > 1);
        let total: usize = pieces
            .iter()
            .map(|p| {
                serde_json::from_str::<Vec<serde_json::Value>>(&p.body)
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(total, 5000);
        assert_eq!(pieces[0].first, 1);
        assert!(pieces.iter().all(|p| p.body.len() < 64 * 1024));
    }
}

//! Campaigns end to end (issue 18): `hark serve` with Twilio credentials,
//! leads imported with `hark leads import`, campaigns run with `hark
//! campaign`, the Twilio fake placing every call Hark asks for. Pacing is
//! measured on the fake's clock (when each `Calls.json` arrived).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Value, json};

use crate::fakes::Fakes;
use crate::fakes::twilio::Phone;
use crate::records::Node;
use crate::support::{Hark, repo_path, temp_dir};

const BUSINESS: &str = "+14155550100";
/// Every zone's day is open unless a campaign narrows it (the test
/// numbers are American; the others' default too).
const ALL_DAY: [(&str, &str); 2] = [
    ("HARK_CAMPAIGNS__DEFAULT_WINDOWS__US", "00:00-24:00"),
    ("HARK_CAMPAIGNS__DEFAULT_WINDOWS__*", "00:00-24:00"),
];

fn env_of(node: &Node, fakes: &Fakes, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = node.env();
    env.extend(fakes.env());
    env.push(("HARK_OUTBOUND__CALLER_ID".into(), BUSINESS.into()));
    env.push(("HARK_OUTBOUND__RING_TIMEOUT_SECS".into(), "5".into()));
    env.extend(ALL_DAY.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn start(node: &Node, fakes: &Fakes, listen: &str, extra: &[(&str, &str)]) -> Hark {
    let policy = repo_path("tests/policies/outbound.toml");
    spawn(node, fakes, listen, &["--policy", &policy], extra)
}

/// `hark serve ARGS` with the campaign tests' environment.
fn spawn(node: &Node, fakes: &Fakes, listen: &str, args: &[&str], extra: &[(&str, &str)]) -> Hark {
    let env = env_of(node, fakes, extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Hark::spawn(listen, args, &env, None)
}

/// `hark ARGS` against `hark`'s API; (success, stdout, stderr).
fn cli(hark: &Hark, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(args)
        .env("HARK_API_URL", format!("http://{}", hark.addr))
        .env("HARK_API_TOKEN", token)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn api(
    hark: &Hark,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = hark
        .http()
        .request(method, hark.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let code = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let path = temp_dir("hark-campaign").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A fixed-offset zone (`Etc/GMT-5` is UTC+5) whose local hour is `hour` now.
fn zone_at_local_hour(hour: i64) -> String {
    use chrono::Timelike;
    let utc = chrono::Utc::now().hour() as i64;
    let mut offset = (hour - utc).rem_euclid(24);
    if offset > 14 {
        offset -= 24;
    }
    match offset {
        0 => "Etc/GMT".into(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// When the fake received each call to each number.
fn dials(fakes: &Fakes) -> BTreeMap<String, Vec<Instant>> {
    let t = &fakes.twilio;
    let mut by_number: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for sid in t.dialed() {
        if let Some((to, at)) = t.call(&sid, |c| (c.to.clone(), c.created)) {
            by_number.entry(to).or_default().push(at);
        }
    }
    for times in by_number.values_mut() {
        times.sort();
    }
    by_number
}

/// Calls per minute between the first and the last dial.
fn achieved_rate(mut times: Vec<Instant>) -> f64 {
    times.sort();
    let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
    (times.len() - 1) as f64 * 60.0 / span
}

async fn wait_for<T>(
    hark: &Hark,
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            hark.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_dials_its_leads_paced_in_their_windows_and_never_a_listed_number() {
    let fakes = Fakes::start().await;
    let node = Node::sqlite();
    // q4 is a metric label; other campaigns are counted as `other`.
    // One campaign not completed at a time.
    let labels = [
        ("HARK_CAMPAIGNS__METRIC_NAMES", r#"["q4"]"#),
        ("HARK_CAMPAIGNS__MAX_CAMPAIGNS", "1"),
    ];
    let hark = start(&node, &fakes, "127.0.0.1:0", &labels);
    let token = node.token("ai_ops", "campaigns");
    let admin = node.token("admin", "admin");
    let t = &fakes.twilio;

    let open = zone_at_local_hour(9);
    let shut = zone_at_local_hour(21);
    let mut csv = String::from("phone,name,time_zone,consent,plan\n");
    let mut busy = Vec::new();
    for i in 0..60 {
        let n = format!("+1415555{:04}", 1000 + i);
        t.phone(&n, Phone::Busy);
        busy.push(n.clone());
        csv.push_str(&format!("{n},Lead {i},{open},,pro\n"));
    }
    // Line 62: a duplicate of line 2 (merged); 63: no number.
    csv.push_str(&format!("(415) 555-1000,Lead Zero,{open},,gold\n"));
    csv.push_str(&format!("not a number,Nobody,{open},,\n"));
    let listed = [
        "+14155552000",
        "+14155552001",
        "+14155552002",
        "+14155552003",
        "+870773111632",
    ];
    for n in listed {
        t.phone(n, Phone::Busy);
    }
    csv.push_str(&format!("+14155552000,On DNC,{open},,\n"));
    csv.push_str(&format!("+14155552001,Blocked,{open},,\n"));
    csv.push_str(&format!("+14155552002,Said no,{open},no,\n"));
    csv.push_str(&format!("+14155552003,Asleep,{shut},,\n"));
    csv.push_str("+870773111632,No zone,,,\n");
    let file = write("leads.csv", &csv);

    let (ok, _, err) = cli(
        &hark,
        &token,
        &["leads", "import", file.to_str().unwrap(), "--list", "q4"],
    );
    assert!(ok, "{err}");
    assert!(err.contains("65 leads created"), "{err}");
    assert!(err.contains("1 duplicate rows merged"), "{err}");
    assert!(
        err.contains("leads.csv:63: phone:"),
        "the bad row by its line: {err}"
    );
    assert!(err.contains("leads.csv:68: time_zone: unknown"), "{err}");
    let (code, leads) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/lists/q4/leads?limit=1000",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let first = &leads.as_array().unwrap()[0];
    assert_eq!(first["number"], "+14155551000");
    assert_eq!(
        first["fields"]["plan"], "gold",
        "the later row's value: {first}"
    );
    assert_eq!(first["status"], "new");
    // At rest: the number and fields are ciphertext, found by keyed hash.
    {
        use sqlx::Connection;
        let mut db = sqlx::sqlite::SqliteConnection::connect(&node.db)
            .await
            .unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>, String)> =
            sqlx::query_as("SELECT number_enc, fields_enc, number_hash FROM leads")
                .fetch_all(&mut db)
                .await
                .unwrap();
        assert_eq!(rows.len(), 65);
        for (number, fields, hash) in rows {
            for clear in [&b"+1415555"[..], b"Lead", b"pro"] {
                assert!(
                    !number.windows(clear.len()).any(|w| w == clear),
                    "a number in clear"
                );
                assert!(
                    !fields.windows(clear.len()).any(|w| w == clear),
                    "a field in clear"
                );
            }
            assert!(!hash.contains("1415"), "{hash}");
        }
    }

    let (ok, _, err) = cli(
        &hark,
        &admin,
        &["dnc", "add", "+14155552000", "--reason", "asked"],
    );
    assert!(ok, "{err}");
    let (code, _) = api(
        &hark,
        &admin,
        reqwest::Method::POST,
        "/api/v1/blocklist",
        Some(json!({"number": "+14155552001", "reason": "abuse"})),
    )
    .await;
    assert_eq!(code, 201);

    // A bad definition is refused field by field; a good one is a draft.
    let (code, body) = api(&hark, &token, reqwest::Method::PUT, "/api/v1/campaigns/q4",
        Some(json!({"policy": "outbound", "lists": ["q4"], "window": "9 to 5", "calls_per_minute": 0}))).await;
    assert_eq!(code, 422, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(
        e.contains("window:") && e.contains("calls_per_minute:"),
        "{e}"
    );
    let spec = write(
        "q4.json",
        &json!({
            "policy": "outbound", "lists": ["q4"], "window": "06:00-12:00",
            "calls_per_minute": 240, "max_concurrent": 30, "max_attempts": 1,
            "owners": {"attempting": "skill:sales"}
        })
        .to_string(),
    );
    let (ok, out, err) = cli(
        &hark,
        &token,
        &["campaign", "define", "q4", spec.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"draft\""), "{out}");
    let (ok, _, err) = cli(&hark, &token, &["campaign", "resume", "q4"]);
    assert!(!ok && err.contains("409") && err.contains("draft"), "{err}");

    let (ok, _, err) = cli(&hark, &token, &["campaign", "start", "q4"]);
    assert!(ok, "{err}");
    wait_for(&hark, "60 dials", Duration::from_secs(60), async || {
        (dials(&fakes).values().map(Vec::len).sum::<usize>() >= 60).then_some(())
    })
    .await;
    // Settled: every busy lead done (max_attempts 1), the others where they belong.
    let status = wait_for(
        &hark,
        "settled leads",
        Duration::from_secs(30),
        async || {
            let (ok, out, _) = cli(&hark, &token, &["campaign", "status", "q4"]);
            let v: Value = serde_json::from_str(&out).ok()?;
            (ok && v["progress"]["done"] == 64).then_some(v)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let by_number = dials(&fakes);
    for n in listed {
        assert!(!by_number.contains_key(n), "{n} was dialed");
    }
    assert_eq!(by_number.len(), 60);
    assert!(by_number.values().all(|d| d.len() == 1), "one attempt each");
    let rate = achieved_rate(by_number.values().flatten().copied().collect());
    eprintln!("pacing: configured 240/min, achieved {rate:.1}/min over 60 dials");
    assert!(
        (rate - 240.0).abs() / 240.0 < 0.05,
        "achieved {rate:.1}/min"
    );

    let p = &status["progress"];
    assert_eq!(p["waiting"], 1, "the lead whose window is shut: {p}");
    assert_eq!(p["not_dialed"]["do_not_call"], 1, "{p}");
    assert_eq!(p["not_dialed"]["blocklist"], 1, "{p}");
    assert_eq!(p["not_dialed"]["no_consent"], 1, "{p}");
    assert_eq!(p["not_dialed"]["unknown_time_zone"], 1, "{p}");
    assert_eq!(p["not_dialed"]["max_attempts"], 60, "{p}");
    assert_eq!(p["statuses"]["attempting"], 60, "{p}");
    assert_eq!(p["statuses"]["do_not_call"], 2, "{p}");
    assert_eq!(status["campaign"]["state"], "running");

    // Attempting leads are the sales skill's: an agent with it sees them.
    let (code, _) = api(
        &hark,
        &admin,
        reqwest::Method::POST,
        "/api/v1/agents",
        Some(json!({"name": "ann", "address": "+14155550199", "skills": "sales"})),
    )
    .await;
    assert_eq!(code, 201);
    let (code, queue) = api(
        &hark,
        &admin,
        reqwest::Method::GET,
        "/api/v1/agents/ann/queue?limit=1000",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(queue.as_array().unwrap().len(), 60, "{queue}");
    let (code, _) = api(
        &hark,
        &admin,
        reqwest::Method::GET,
        "/api/v1/agents/nobody/queue",
        None,
    )
    .await;
    assert_eq!(code, 404);

    // Analytics: today's dials, as JSON and CSV, and counted for Prometheus.
    let (code, days) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/campaigns/q4/stats",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(days[0]["dials"], 60, "{days}");
    assert_eq!(days[0]["connects"], 0, "{days}");
    let (ok, out, err) = cli(&hark, &token, &["campaign", "stats", "q4", "--csv"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("day,dials,connects,connection_rate"),
        "{out}"
    );
    assert!(out.lines().nth(1).unwrap().contains(",60,0,"), "{out}");
    let metrics = hark.metrics().await;
    assert_eq!(
        metrics.sum(
            "hark_campaign_attempts_total",
            &[("campaign", "q4"), ("result", "busy")]
        ),
        60.0
    );
    assert_eq!(
        metrics.sum(
            "hark_campaign_leads_not_dialed_total",
            &[("campaign", "q4"), ("reason", "do_not_call")]
        ),
        1.0
    );

    let (ok, out, _) = cli(&hark, &token, &["campaign", "pause", "q4"]);
    assert!(ok && out.contains("\"paused\""), "{out}");
    // max_campaigns counts the campaigns not completed: q4 holds the place.
    let q5 =
        json!({"policy": "outbound", "lists": ["q4"], "calls_per_minute": 60, "max_concurrent": 1});
    let put_q5 = async || {
        let path = "/api/v1/campaigns/q5";
        api(&hark, &token, reqwest::Method::PUT, path, Some(q5.clone())).await
    };
    let (code, body) = put_q5().await;
    assert_eq!(code, 409, "{body}");
    assert!(body.to_string().contains("max_campaigns"), "{body}");
    let (ok, out, _) = cli(&hark, &token, &["campaign", "complete", "q4"]);
    assert!(ok && out.contains("\"completed\""), "{out}");
    let (code, body) = put_q5().await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = api(
        &hark,
        &token,
        reqwest::Method::POST,
        "/api/v1/campaigns/q4/start",
        None,
    )
    .await;
    assert_eq!(code, 409);
    let (code, _) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/campaigns/nope",
        None,
    )
    .await;
    assert_eq!(code, 404);
    let viewer = node.token("viewer", "viewer");
    let (code, _) = api(
        &hark,
        &viewer,
        reqwest::Method::GET,
        "/api/v1/campaigns",
        None,
    )
    .await;
    assert_eq!(code, 403);
}

async fn campaign_state(hark: &Hark, token: &str, name: &str) -> Value {
    let (code, body) = api(
        hark,
        token,
        reqwest::Method::GET,
        &format!("/api/v1/campaigns/{name}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body
}

/// `PUT` the campaign `name` (a draft) and start it.
async fn define_and_start(hark: &Hark, token: &str, name: &str, spec: Value) {
    let path = format!("/api/v1/campaigns/{name}");
    let (code, body) = api(hark, token, reqwest::Method::PUT, &path, Some(spec)).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api(
        hark,
        token,
        reqwest::Method::POST,
        &format!("{path}/start"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

/// The campaign once it has completed (within `limit`).
async fn completed(hark: &Hark, token: &str, name: &str, limit: Duration) -> Value {
    wait_for(
        hark,
        &format!("campaign {name} to complete"),
        limit,
        async || {
            let c = campaign_state(hark, token, name).await;
            (c["campaign"]["state"] == "completed").then_some(c)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_each_outcome_and_a_restart_dials_no_attempt_twice() {
    let fakes = Fakes::start().await;
    let node = Node::sqlite();
    // Callbacks that come while the node is down are looked up with the carrier.
    let quick = [("HARK_CAMPAIGNS__RECONCILE_AFTER_SECS", "2")];
    let hark = start(&node, &fakes, "127.0.0.1:0", &quick);
    let token = node.token("ai_ops", "campaigns");
    let t = &fakes.twilio;
    let (busy, failed, unanswered) = ("+14155553001", "+14155553002", "+14155553003");
    t.phone(busy, Phone::Busy);
    t.phone(unanswered, Phone::NoAnswer);
    // `failed`: a number the fake's carrier cannot reach.
    let file = write(
        "retry.json",
        &json!([{"phone": busy}, {"phone": failed}, {"phone": unanswered}]).to_string(),
    );
    let (ok, _, err) = cli(
        &hark,
        &token,
        &["leads", "import", file.to_str().unwrap(), "--list", "retry"],
    );
    assert!(ok, "{err}");
    let spec = json!({
        "policy": "outbound", "lists": ["retry"], "calls_per_minute": 600, "max_attempts": 3,
        "retry": {"busy_secs": 2, "failed_secs": 4, "no_answer_secs": 1, "voicemail_secs": 60}
    });
    define_and_start(&hark, &token, "retry", spec).await;

    // Killed (SIGKILL) after the busy lead's second dial; restarted on the
    // same address and database.
    wait_for(
        &hark,
        "a second dial",
        Duration::from_secs(30),
        async || (dials(&fakes).get(busy).map_or(0, Vec::len) >= 2).then_some(()),
    )
    .await;
    let addr = hark.addr.clone();
    drop(hark);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hark = start(&node, &fakes, &addr, &quick);

    let done = completed(&hark, &token, "retry", Duration::from_secs(90)).await;
    let by_number = dials(&fakes);
    let gaps = |n: &str| -> Vec<f64> {
        by_number[n]
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_secs_f64())
            .collect()
    };
    for (n, min_gap) in [(busy, 2.0), (failed, 4.0), (unanswered, 6.0)] {
        assert_eq!(
            by_number[n].len(),
            3,
            "{n}: three attempts, none twice: {:?}",
            gaps(n)
        );
        assert!(gaps(n).iter().all(|g| *g >= min_gap), "{n}: {:?}", gaps(n));
    }
    assert_eq!(done["progress"]["not_dialed"]["max_attempts"], 3, "{done}");
    assert_eq!(done["progress"]["statuses"]["attempting"], 3, "{done}");
    let (code, days) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/campaigns/retry/stats",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(days[0]["dials"], 9, "{days}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_dial_each_lead_once_at_the_campaigns_pace() {
    let fakes = Fakes::start().await;
    let node = Node::postgres().await;
    let a = start(&node, &fakes, "127.0.0.1:0", &[("HARK_NODE", "a")]);
    let b = start(&node, &fakes, "127.0.0.1:0", &[("HARK_NODE", "b")]);
    let token = node.token("ai_ops", "campaigns");
    let t = &fakes.twilio;
    let mut csv = String::from("phone\n");
    for i in 0..120 {
        let n = format!("+1415556{:04}", 1000 + i);
        t.phone(&n, Phone::Busy);
        csv.push_str(&format!("{n}\n"));
    }
    let file = write("two.csv", &csv);
    let (ok, _, err) = cli(
        &a,
        &token,
        &["leads", "import", file.to_str().unwrap(), "--list", "two"],
    );
    assert!(ok, "{err}");
    let spec = json!({"policy": "outbound", "lists": ["two"], "calls_per_minute": 480, "max_concurrent": 100, "max_attempts": 1});
    define_and_start(&b, &token, "two", spec).await;
    completed(&a, &token, "two", Duration::from_secs(90)).await;
    let by_number = dials(&fakes);
    assert_eq!(by_number.len(), 120);
    assert!(
        by_number.values().all(|d| d.len() == 1),
        "a lead dialed twice"
    );
    // Both nodes dialed: the answer URLs name each node's address.
    let requests = t.requests();
    let from = |h: &Hark| {
        requests
            .iter()
            .filter(|r| r.starts_with("POST Calls.json") && r.contains(&h.addr))
            .count()
    };
    let (on_a, on_b) = (from(&a), from(&b));
    eprintln!("two nodes: {on_a} dials from a, {on_b} from b");
    assert_eq!(on_a + on_b, 120);
    assert!(on_a > 0 && on_b > 0, "a {on_a}, b {on_b}\n{}", b.logs());
    // Not in `campaigns.metric_names`: counted under `other`.
    let (ma, mb) = (a.metrics().await, b.metrics().await);
    let dials_as = |label: &str| {
        let of = [("campaign", label)];
        ma.sum("hark_campaign_dials_total", &of) + mb.sum("hark_campaign_dials_total", &of)
    };
    assert_eq!((dials_as("other"), dials_as("two")), (120.0, 0.0));
    let rate = achieved_rate(by_number.values().flatten().copied().collect());
    eprintln!("pacing across two nodes: configured 480/min, achieved {rate:.1}/min over 120 dials");
    assert!(
        (rate - 480.0).abs() / 480.0 < 0.05,
        "achieved {rate:.1}/min"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_leads_import_with_bad_rows_reported_and_duplicates_merged() {
    let node = Node::postgres().await;
    let fakes = Fakes::start().await;
    let hark = start(&node, &fakes, "127.0.0.1:0", &[]);
    let token = node.token("ai_ops", "import");
    let mut csv = String::from("phone,first_name,company,plan,priority\n");
    let mut bad = 0;
    let mut dupes = 0;
    for i in 0..10_000u32 {
        if i % 100 == 99 {
            csv.push_str(&format!("555-01{i:02},Bad {i},Acme,pro,\n"));
            bad += 1;
        } else if i % 50 == 49 {
            // The number of row i - 1 again.
            csv.push_str(&format!("+1 212 555 {:04},Again,Acme,gold,3\n", i - 1));
            dupes += 1;
        } else {
            csv.push_str(&format!("+1 212 555 {i:04},नाम {i},Acme & Co,pro,\n"));
        }
    }
    let file = write("ten-thousand.csv", &csv);
    let started = Instant::now();
    let (ok, _, err) = cli(
        &hark,
        &token,
        &["leads", "import", file.to_str().unwrap(), "--list", "big"],
    );
    let took = started.elapsed();
    assert!(ok, "{err}");
    let unique = 10_000 - bad - dupes;
    eprintln!(
        "import: 10,000 rows in {:.2} s ({unique} leads, {bad} bad rows, {dupes} duplicates)",
        took.as_secs_f64()
    );
    assert!(err.contains(&format!("{unique} leads created")), "{err}");
    assert!(
        err.contains(&format!("{dupes} duplicate rows merged")),
        "{err}"
    );
    assert!(err.contains(&format!("{bad} rows not imported")), "{err}");
    assert!(
        err.contains("ten-thousand.csv:101: phone:"),
        "row 100 is line 101: {err}"
    );
    // The same file again: every lead is already there.
    let (ok, _, err) = cli(
        &hark,
        &token,
        &["leads", "import", file.to_str().unwrap(), "--list", "big"],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("0 leads created, {unique} merged")),
        "{err}"
    );
    let (code, leads) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/lists/big/leads?limit=50",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let l48 = leads
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["number"] == "+12125550048")
        .unwrap();
    assert_eq!(l48["fields"]["plan"], "gold", "merged: {l48}");
    assert_eq!(l48["priority"], 3);
    assert_eq!(l48["time_zone"], "America/New_York");
}

/// A list keeps the region its imports named: national numbers in later
/// files are read there, not in the node's default (US).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_reads_national_numbers_in_its_own_region() {
    let node = Node::sqlite();
    let fakes = Fakes::start().await;
    let hark = start(&node, &fakes, "127.0.0.1:0", &[]);
    let token = node.token("ai_ops", "import");
    let file = write("mumbai.csv", "phone,name\n098765 43210,पहला\n");
    let (ok, _, err) = cli(
        &hark,
        &token,
        &[
            "leads",
            "import",
            file.to_str().unwrap(),
            "--list",
            "mumbai",
            "--region",
            "IN",
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("1 leads created"), "{err}");
    assert!(err.contains("read in IN"), "{err}");
    let import = async |list: &str, query: &str, phone: &str| {
        let path = format!("/api/v1/lists/{list}/leads{query}");
        let body = serde_json::json!([{ "phone": phone }]);
        api(&hark, &token, reqwest::Method::POST, &path, Some(body)).await
    };
    // No region named: the list's.
    let (code, report) = import("mumbai", "", "98765 43211").await;
    assert_eq!(
        (code, report["region"].as_str()),
        (201, Some("IN")),
        "{report}"
    );
    // A region libphonenumber does not know: the national row is reported,
    // and the list keeps its own.
    let (code, report) = import("mumbai", "?region=ZZ", "98765 43212").await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["errors"][0]["field"], "phone", "{report}");
    let (code, report) = import("mumbai", "", "98765 43213").await;
    assert_eq!(
        (code, report["region"].as_str()),
        (201, Some("IN")),
        "{report}"
    );
    // Another list: the node's default.
    let (code, report) = import("sf", "", "(415) 555-1000").await;
    assert_eq!(
        (code, report["region"].as_str()),
        (201, Some("US")),
        "{report}"
    );
    let (_, leads) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/lists/mumbai/leads",
        None,
    )
    .await;
    let numbers: Vec<&str> = leads
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["number"].as_str())
        .collect();
    assert_eq!(numbers, ["+919876543210", "+919876543211", "+919876543213"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_who_says_dont_call_me_again_is_never_called_by_any_campaign() {
    let fakes = Fakes::start().await;
    let node = Node::sqlite();
    let dir = temp_dir("hark-campaign-policies");
    for p in ["campaign.toml", "outbound.toml"] {
        std::fs::copy(repo_path(&format!("tests/policies/{p}")), dir.join(p)).unwrap();
    }
    let policies = ["--policies", dir.to_str().unwrap()];
    let hark = spawn(&node, &fakes, "127.0.0.1:0", &policies, &[]);
    let token = node.token("ai_ops", "campaigns");
    let admin = node.token("admin", "admin");
    let t = &fakes.twilio;
    let lead = "+14155557001";
    t.phone(
        lead,
        Phone::Lead {
            after: Duration::from_millis(300),
            plays: Some(crate::support::speech("order")),
            verdicts: vec![],
        },
    );
    for list in ["spring", "autumn"] {
        let file = write(
            &format!("{list}.csv"),
            &format!("phone,name\n{lead},Meera\n"),
        );
        let (ok, _, err) = cli(
            &hark,
            &token,
            &["leads", "import", file.to_str().unwrap(), "--list", list],
        );
        assert!(ok, "{err}");
    }
    let spec = json!({"policy": "campaign", "lists": ["spring"], "max_attempts": 3});
    define_and_start(&hark, &token, "spring", spec).await;
    let done = completed(&hark, &token, "spring", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["statuses"]["do_not_call"], 1, "{done}");
    // The day's roll-up: one dial, connected, not qualified, its disposition.
    let (_, days) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/campaigns/spring/stats",
        None,
    )
    .await;
    let day = &days[0];
    assert_eq!(
        (
            day["dials"].as_i64(),
            day["connects"].as_i64(),
            day["qualified"].as_i64()
        ),
        (Some(1), Some(1), Some(0)),
        "{days}"
    );
    assert_eq!(day["connection_rate"], 1.0, "{days}");
    assert_eq!(day["outcomes"]["disposition"]["do_not_call"], 1, "{days}");
    assert!(day["average_handle_secs"].as_f64().unwrap() > 0.5, "{days}");
    // Retention (transcripts and slot values erased) leaves the roll-ups.
    let store = hark_runtime::store::Store::open(&node.db).await.unwrap();
    let purged = store.purge_personal(i64::MAX).await.unwrap();
    assert!(purged.turns > 0, "{purged:?}");
    let (_, after) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/campaigns/spring/stats",
        None,
    )
    .await;
    assert_eq!(after, days);
    let sid = t.dialed()[0].clone();
    let heard = t.call(&sid, |c| c.heard.join(" | ")).unwrap_or_default();
    let (code, call) = api(
        &hark,
        &admin,
        reqwest::Method::GET,
        &format!("/api/v1/calls/{sid}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{call}");
    assert_eq!(call["end_reason"], "do_not_call", "{call}\n{heard}");
    assert_eq!(call["disposition"], "do_not_call", "{call}");
    let (_, dnc) = api(&hark, &admin, reqwest::Method::GET, "/api/v1/dnc", None).await;
    let entry = dnc
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["number"] == lead)
        .cloned();
    assert_eq!(
        entry.map(|e| e["source"].clone()),
        Some(json!("rule:do_not_call")),
        "{dnc}"
    );

    // Another campaign with the same number: refused, never dialed.
    let spec = json!({"policy": "campaign", "lists": ["autumn"]});
    define_and_start(&hark, &token, "autumn", spec).await;
    let done = completed(&hark, &token, "autumn", Duration::from_secs(30)).await;
    assert_eq!(done["progress"]["not_dialed"]["do_not_call"], 1, "{done}");
    assert_eq!(
        t.dialed().len(),
        1,
        "dialed once, by the first campaign only"
    );

    // Erasure on request covers leads: number and fields blanked in both
    // lists, the status (why they are not called) kept.
    let (code, erased) = api(
        &hark,
        &admin,
        reqwest::Method::DELETE,
        "/api/v1/personal-data?number=%2B14155557001",
        None,
    )
    .await;
    assert_eq!(code, 200, "{erased}");
    assert_eq!(erased["leads"], 2, "{erased}");
    let (_, leads) = api(
        &hark,
        &token,
        reqwest::Method::GET,
        "/api/v1/lists/spring/leads",
        None,
    )
    .await;
    let l = &leads[0];
    assert_eq!(
        (
            l["number"].as_str(),
            l["fields"].as_object().map(|f| f.len())
        ),
        (Some(""), Some(0)),
        "{l}"
    );
    assert_eq!(l["status"], "do_not_call");
}

/// The README's pacing figures: `CAMPAIGN_RATE` calls a minute (default
/// 1200) over `CAMPAIGN_LEADS` busy leads (default 400) on one node.
/// `cargo test --test e2e campaigns::pacing_figure -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for the README, not a test of behaviour"]
async fn pacing_figure() {
    let rate: u32 = std::env::var("CAMPAIGN_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1200);
    let leads: u32 = std::env::var("CAMPAIGN_LEADS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(400);
    let fakes = Fakes::start().await;
    let node = Node::postgres().await;
    let hark = start(&node, &fakes, "127.0.0.1:0", &[]);
    let token = node.token("ai_ops", "pacing");
    let mut csv = String::from("phone\n");
    for i in 0..leads {
        let n = format!("+1415558{i:04}");
        fakes.twilio.phone(&n, Phone::Busy);
        csv.push_str(&format!("{n}\n"));
    }
    let file = write("pacing.csv", &csv);
    let (ok, _, err) = cli(
        &hark,
        &token,
        &[
            "leads",
            "import",
            file.to_str().unwrap(),
            "--list",
            "pacing",
        ],
    );
    assert!(ok, "{err}");
    let spec = json!({"policy": "outbound", "lists": ["pacing"], "calls_per_minute": rate, "max_concurrent": 1000, "max_attempts": 1});
    define_and_start(&hark, &token, "pacing", spec).await;
    let limit = Duration::from_secs(u64::from(leads) * 60 / u64::from(rate) + 60);
    wait_for(&hark, "every lead dialed", limit, async || {
        (dials(&fakes).len() as u32 >= leads).then_some(())
    })
    .await;
    let by_number = dials(&fakes);
    assert!(by_number.values().all(|d| d.len() == 1));
    let achieved = achieved_rate(by_number.values().flatten().copied().collect());
    eprintln!(
        "pacing: configured {rate}/min, achieved {achieved:.1}/min over {leads} dials ({:+.2}%)",
        (achieved - f64::from(rate)) / f64::from(rate) * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_the_lead_asks_for_is_their_next_attempt() {
    let fakes = Fakes::start().await;
    let node = Node::sqlite();
    // The window the callee gives: the day after tomorrow, 10:00-11:00 in
    // New York, written with its offset as the model would.
    let ny = chrono_tz::America::New_York;
    let day = (chrono::Utc::now() + chrono::Duration::days(2))
        .with_timezone(&ny)
        .date_naive();
    let start = day
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_local_timezone(ny)
        .unwrap();
    let end = start + chrono::Duration::hours(1);
    let dir = temp_dir("hark-campaign-callback");
    let policy = std::fs::read_to_string(repo_path("tests/policies/callback.toml"))
        .unwrap()
        .replace("\"START\"", &format!("\"{}\"", start.to_rfc3339()))
        .replace("\"END\"", &format!("\"{}\"", end.to_rfc3339()));
    std::fs::write(dir.join("callback.toml"), policy).unwrap();
    let policies = ["--policies", dir.to_str().unwrap()];
    let hark = spawn(&node, &fakes, "127.0.0.1:0", &policies, &[]);
    let token = node.token("ai_ops", "campaigns");
    let t = &fakes.twilio;
    let lead = "+12125557002";
    t.phone(
        lead,
        Phone::Lead {
            after: Duration::from_millis(300),
            plays: Some(crate::support::speech("order")),
            verdicts: vec![],
        },
    );
    let file = write("callback.csv", &format!("phone,name\n{lead},Ravi\n"));
    let (ok, _, err) = cli(
        &hark,
        &token,
        &["leads", "import", file.to_str().unwrap(), "--list", "cb"],
    );
    assert!(ok, "{err}");
    let spec = json!({"policy": "callback", "lists": ["cb"], "max_attempts": 1});
    define_and_start(&hark, &token, "cb", spec).await;
    let sid = wait_for(&hark, "the call", Duration::from_secs(30), async || {
        t.dialed().first().cloned()
    })
    .await;
    // The callee hangs up once the window is on record (the call's slots
    // go on record as they fill).
    let admin = node.token("admin", "admin");
    wait_for(
        &hark,
        "the callback window on record",
        Duration::from_secs(30),
        async || {
            let (_, call) = api(
                &hark,
                &admin,
                reqwest::Method::GET,
                &format!("/api/v1/calls/{sid}"),
                None,
            )
            .await;
            call.to_string().contains("\"callback\":{").then_some(())
        },
    )
    .await;
    t.hang_up(&sid).await;
    let done = wait_for(
        &hark,
        "the attempt settled",
        Duration::from_secs(30),
        async || {
            let c = campaign_state(&hark, &token, "cb").await;
            (c["progress"]["statuses"]["callback"] == 1).then_some(c)
        },
    )
    .await;
    // Past max_attempts (1) and still waiting: due at the window's start.
    assert_eq!(done["progress"]["waiting"], 1, "{done}");
    assert_eq!(done["campaign"]["state"], "running", "{done}");
    use sqlx::Connection;
    let mut db = sqlx::sqlite::SqliteConnection::connect(&node.db)
        .await
        .unwrap();
    let (next_at, attempts): (i64, i64) =
        sqlx::query_as("SELECT next_at, attempts FROM campaign_leads")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(
        next_at,
        start.timestamp_millis(),
        "due at the window's start"
    );
    assert_eq!(attempts, 1);
    assert_eq!(t.dialed().len(), 1, "not called again before then");
}

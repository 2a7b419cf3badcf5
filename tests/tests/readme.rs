//! The README's API tour, run as written against a fresh server: every
//! `curl` line must succeed (or fail exactly as the README shows), and every
//! response the README prints must be what the server answers.

use reqwest::Method;
use serde_json::Value;
use tidelake_tests::Server;

/// Split a shell command line on blanks, honouring single quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// The README's curl commands, each with the JSON response shown after it, if any.
fn tour(readme: &str) -> Vec<(Vec<String>, Option<Value>)> {
    let mut steps: Vec<(Vec<String>, Option<Value>)> = Vec::new();
    let mut block: Option<&str> = None;
    let mut json = String::new();
    for line in readme.lines() {
        match (block, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => block = Some(if lang.starts_with("json") { "json" } else { "other" }),
            (Some(kind), Some(_)) => {
                if kind == "json" {
                    if let Some(last) = steps.last_mut() {
                        last.1 = serde_json::from_str(&json).ok();
                    }
                    json.clear();
                }
                block = None;
            }
            (Some("json"), None) => json.push_str(line),
            (Some(_), None) if line.starts_with("curl ") && line.contains("localhost:7432") => {
                steps.push((shell_words(line), None));
            }
            _ => {}
        }
    }
    steps
}

/// Drop values that differ from run to run.
fn stable(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            for key in ["xid", "commitTs", "lastAccessMs", "diskBytes"] {
                map.remove(key);
            }
            for value in map.values_mut() {
                *value = stable(value.take());
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = stable(item.take());
            }
        }
        _ => {}
    }
    v
}

#[tokio::test]
async fn the_readme_api_tour_works_as_written() {
    let readme = std::fs::read_to_string(tidelake_tests::tests_dir().join("../README.md")).unwrap();
    let steps = tour(&readme);
    assert!(steps.len() >= 8, "found only {} curl commands in the README", steps.len());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]).await;
    let http = reqwest::Client::new();
    let shown_count = steps.iter().filter(|s| s.1.is_some()).count();
    assert!(shown_count >= 3, "found only {shown_count} responses shown in the README");

    for (words, shown) in steps {
        let mut url = None;
        let mut body = None;
        let mut headers = Vec::new();
        let mut args = words.iter().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-s" => {}
                // As curl sends them: `-d` as a form, `--json` as JSON.
                "-d" => {
                    body = args.next().cloned();
                    headers.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
                }
                "--json" => {
                    body = args.next().cloned();
                    headers.push(("content-type".into(), "application/json".into()));
                    headers.push(("accept".into(), "application/json".into()));
                }
                "-H" => {
                    let (k, v) = args.next().unwrap().split_once(':').unwrap();
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                other if other.starts_with("localhost:7432") => {
                    url = Some(other.replacen("localhost:7432", &server.base, 1));
                }
                other => panic!("the README uses a curl option this test does not know: {other}"),
            }
        }
        let url = url.expect("curl line without URL");
        let mut req = http.request(if body.is_some() { Method::POST } else { Method::GET }, &url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap();
        let expect_error = shown.as_ref().is_some_and(|v| v.get("error").is_some());
        assert_eq!(status.is_success(), !expect_error, "{}: {status} {answer}", words.join(" "));
        if let Some(shown) = shown {
            assert_eq!(stable(answer), stable(shown), "{}", words.join(" "));
        }
    }
}

#[test]
fn shell_words_honours_single_quotes() {
    assert_eq!(
        shell_words(r#"curl -s -H 'X-Tenant-Id: a' localhost:7432/q -d '{"sql": "SELECT 1"}'"#),
        ["curl", "-s", "-H", "X-Tenant-Id: a", "localhost:7432/q", "-d", r#"{"sql": "SELECT 1"}"#]
    );
}

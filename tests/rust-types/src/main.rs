//! Reads `{"table": <name>, "rows": [...]}` documents, one per line, from
//! standard input; deserializes each one's rows into the generated struct
//! of that table (src/types.rs, written by the test) and prints them
//! serialized again, one JSON line each. A row that does not deserialize
//! ends the program with the error.

mod types;

use std::io::BufRead;

fn again<T: serde::de::DeserializeOwned + serde::Serialize>(rows: serde_json::Value) -> serde_json::Value {
    let typed: Vec<T> = serde_json::from_value(rows).unwrap_or_else(|e| panic!("rows do not deserialize: {e}"));
    serde_json::to_value(&typed).expect("serialize")
}

fn main() {
    for line in std::io::stdin().lock().lines() {
        let doc: serde_json::Value = serde_json::from_str(&line.expect("read")).expect("a JSON line");
        let rows = doc["rows"].clone();
        // The test writes this dispatch: one arm per table.
        let out = include!("dispatch.rs");
        println!("{out}");
    }
}

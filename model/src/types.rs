//! Types for a tenant's tables, generated from its schema (`GET
//! /t/{tenant}/schema`'s `tables`): TypeScript interfaces and Rust structs
//! with serde, one select shape (a row as the HTTP API answers it) and one
//! insert shape per table (`tidelake types`).
//!
//! A column's type is what the API really gives for it — [`Shape`], the
//! one mapping the API's encoder follows too: integers as numbers, floats
//! as numbers or `"NaN"`/`"Infinity"`/`"-Infinity"`, `numeric` and every
//! text-form type (timestamps, uuid, bytea…) as strings, `json`/`jsonb` as
//! JSON, enums as the union of their labels, arrays of those as arrays
//! with nullable elements; a nullable column adds `null`. The insert shape
//! makes optional what PostgreSQL fills in (a default, an identity,
//! nullable columns) and leaves out what may not be given (a generated
//! column, an identity `GENERATED ALWAYS`).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

use crate::values::{Shape, oid};

/// The languages generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    TypeScript,
    Rust,
}

impl Lang {
    pub fn parse(name: &str) -> Option<Lang> {
        match name.to_ascii_lowercase().as_str() {
            "typescript" | "ts" => Some(Lang::TypeScript),
            "rust" | "rs" => Some(Lang::Rust),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Table {
    schema: String,
    name: String,
    columns: Vec<Column>,
    #[serde(default)]
    primary_key: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Column {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    type_oid: i32,
    nullable: bool,
    default: Option<String>,
    base_type_oid: Option<i32>,
    identity: Option<String>,
    #[serde(default)]
    generated: bool,
    #[serde(rename = "enum")]
    enum_type: Option<EnumType>,
    /// The extension the type belongs to, if an extension's.
    extension: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct EnumType {
    schema: String,
    name: String,
    labels: Vec<String>,
}

/// Whether an insert may, must or must not give the column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    Required,
    Optional,
    Never,
}

impl Column {
    /// The column's type for its comment: an array the API gives as text says so.
    fn described(&self) -> String {
        if self.type_name.ends_with("[]") && self.shape() == Shape::Text {
            format!("{} (the API gives arrays of this type in PostgreSQL's text form, {{a,b}})", self.type_name)
        } else {
            self.type_name.clone()
        }
    }

    /// The shape of the column's values, by the type a result carries (a
    /// domain's base type's).
    fn shape(&self) -> Shape {
        self.extension
            .as_deref()
            .and_then(|extension| crate::values::extension_shape(extension, &self.type_name))
            .unwrap_or_else(|| Shape::of(self.base_type_oid.unwrap_or(self.type_oid)))
    }

    fn insert(&self) -> Insert {
        if self.generated || self.identity.as_deref() == Some("always") {
            Insert::Never
        } else if self.nullable || self.default.is_some() || self.identity.is_some() {
            Insert::Optional
        } else {
            Insert::Required
        }
    }
}

/// The generated source for `tables` (the schema answer's `tables`);
/// `source` says where it came from, for the header. Drizzle's record
/// (`drizzle.__drizzle_migrations`) is bookkeeping, not the application's, and
/// is left out.
pub fn generate(tables: &Value, lang: Lang, source: &str) -> Result<String, String> {
    let tables: Vec<Table> =
        serde_json::from_value(tables.clone()).map_err(|e| format!("the schema's tables are not as expected: {e}"))?;
    let tables: Vec<Table> =
        tables.into_iter().filter(|t| !(t.schema == "drizzle" && t.name == "__drizzle_migrations")).collect();
    let mut enums: BTreeMap<(String, String), EnumType> = BTreeMap::new();
    for column in tables.iter().flat_map(|t| &t.columns) {
        if let Some(e) = &column.enum_type {
            enums.insert((e.schema.clone(), e.name.clone()), e.clone());
        }
    }
    let mut names = Names::default();
    let enum_names: BTreeMap<(String, String), String> =
        enums.keys().map(|(schema, name)| ((schema.clone(), name.clone()), names.type_name(schema, name))).collect();
    let table_names: Vec<String> = tables.iter().map(|t| names.type_name(&t.schema, &t.name)).collect();
    let model = Model { tables: &tables, table_names: &table_names, enums: &enums, enum_names: &enum_names, source };
    Ok(match lang {
        Lang::TypeScript => model.typescript(),
        Lang::Rust => model.rust(),
    })
}

struct Model<'a> {
    tables: &'a [Table],
    table_names: &'a [String],
    enums: &'a BTreeMap<(String, String), EnumType>,
    enum_names: &'a BTreeMap<(String, String), String>,
    source: &'a str,
}

impl Model<'_> {
    fn enum_name(&self, e: &EnumType) -> &str {
        &self.enum_names[&(e.schema.clone(), e.name.clone())]
    }

    /// The table as SQL names it: `name`, or `schema.name` outside `public`.
    fn sql_name(table: &Table) -> String {
        if table.schema == "public" { table.name.clone() } else { format!("{}.{}", table.schema, table.name) }
    }

    fn describe(table: &Table) -> String {
        let key = if table.primary_key.is_empty() {
            "no primary key".to_owned()
        } else {
            format!("primary key ({})", table.primary_key.join(", "))
        };
        format!("{}.{}: {key}", table.schema, table.name)
    }

    fn typescript(&self) -> String {
        let mut out = format!(
            "// Generated by `tidelake types` from {}. Do not edit: generate again\n\
             // after a migration. Each table has its row as the HTTP API answers it\n\
             // and the columns an insert may give.\n\n\
             /** A `json` or `jsonb` value. */\n\
             export type Json = string | number | boolean | null | Json[] | {{ [key: string]: Json }};\n\n\
             /** A `real` or `double precision` value: a number, or one PostgreSQL has and JSON has not. */\n\
             export type Float = number | \"NaN\" | \"Infinity\" | \"-Infinity\";\n",
            self.source
        );
        for (key, e) in self.enums {
            let labels: Vec<String> = e.labels.iter().map(|l| json_string(l)).collect();
            let union = if labels.is_empty() { "never".to_owned() } else { labels.join(" | ") };
            out += &format!("\n/** The enum {}.{}. */\nexport type {} = {union};\n", key.0, key.1, self.enum_name(e));
        }
        for (table, name) in self.tables.iter().zip(self.table_names) {
            out += &format!("\n/** A row of {}. */\nexport interface {name} {{\n", Self::describe(table));
            for column in &table.columns {
                let null = if column.nullable { " | null" } else { "" };
                out += &format!(
                    "  /** {} */\n  {}: {}{null};\n",
                    column.described(),
                    ts_property(&column.name),
                    self.ts_type(&column.shape(), column)
                );
            }
            out += &format!("}}\n\n/** What an insert into {} may give. */\nexport interface {name}Insert {{\n", Self::sql_name(table));
            for column in &table.columns {
                let null = if column.nullable { " | null" } else { "" };
                let property = ts_property(&column.name);
                let ty = self.ts_type(&column.shape(), column);
                out += &match column.insert() {
                    Insert::Required => format!("  {property}: {ty}{null};\n"),
                    Insert::Optional => format!("  {property}?: {ty}{null};\n"),
                    Insert::Never => format!("  /** generated: not given */\n  {property}?: never;\n"),
                };
            }
            out += "}\n";
        }
        out += "\n/** Every table by its name in SQL, with its row and insert shapes. */\nexport interface Tables {\n";
        for (table, name) in self.tables.iter().zip(self.table_names) {
            out += &format!("  {}: {{ row: {name}; insert: {name}Insert }};\n", json_string(&Self::sql_name(table)));
        }
        out += "}\n";
        out
    }

    fn ts_type(&self, shape: &Shape, column: &Column) -> String {
        match shape {
            Shape::Boolean => "boolean".to_owned(),
            Shape::Integer(_) => "number".to_owned(),
            Shape::Float => "Float".to_owned(),
            Shape::Json => "Json".to_owned(),
            Shape::Text => match &column.enum_type {
                Some(e) => self.enum_name(e).to_owned(),
                None => "string".to_owned(),
            },
            Shape::Array(element) => format!("({} | null)[]", self.ts_type(element, column)),
        }
    }

    fn rust(&self) -> String {
        let mut out = format!(
            "// Generated by `tidelake types` from {}. Do not edit: generate again\n\
             // after a migration. Each table has its row as the HTTP API answers it\n\
             // (deserialize `rows` of a query in object mode) and the columns an\n\
             // insert may give. Needs the crates serde (with `derive`) and serde_json.\n\n\
             use serde::{{Deserialize, Serialize}};\n\n\
             /// A `json` or `jsonb` value.\n\
             pub type Json = serde_json::Value;\n\n{FLOAT_RS}",
            self.source
        );
        for (key, e) in self.enums {
            let name = self.enum_name(e);
            out += &format!(
                "\n/// The enum {}.{}.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]\npub enum {name} {{\n",
                key.0, key.1
            );
            let mut variants = Names::default();
            for label in &e.labels {
                let variant = variants.unique(rust_type_ident(label));
                out += &format!("    #[serde(rename = {})]\n    {variant},\n", json_string(label));
            }
            out += "}\n";
        }
        for (table, name) in self.tables.iter().zip(self.table_names) {
            let mut fields = Names::default();
            let idents: Vec<String> = table.columns.iter().map(|c| fields.unique(rust_field_ident(&c.name))).collect();
            out += &format!(
                "\n/// A row of {}.\n#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\npub struct {name} {{\n",
                Self::describe(table)
            );
            for (column, ident) in table.columns.iter().zip(&idents) {
                let ty = self.rust_type(&column.shape(), column);
                let ty = if column.nullable { format!("Option<{ty}>") } else { ty };
                out += &format!("    /// {}\n{}    pub {ident}: {ty},\n", column.described(), rename(ident, &column.name));
            }
            out += &format!(
                "}}\n\n/// What an insert into {} may give (`None`: left to PostgreSQL).\n\
                 #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\npub struct {name}Insert {{\n",
                Self::sql_name(table)
            );
            for (column, ident) in table.columns.iter().zip(&idents) {
                let ty = self.rust_type(&column.shape(), column);
                out += &match column.insert() {
                    Insert::Required => format!("{}    pub {ident}: {ty},\n", rename(ident, &column.name)),
                    Insert::Optional => format!(
                        "    #[serde(default, skip_serializing_if = \"Option::is_none\")]\n{}    pub {ident}: Option<{ty}>,\n",
                        rename(ident, &column.name)
                    ),
                    Insert::Never => continue,
                };
            }
            out += "}\n";
        }
        out
    }

    fn rust_type(&self, shape: &Shape, column: &Column) -> String {
        match shape {
            Shape::Boolean => "bool".to_owned(),
            Shape::Integer(oid::INT2) => "i16".to_owned(),
            Shape::Integer(oid::INT4) => "i32".to_owned(),
            Shape::Integer(oid::OID) => "u32".to_owned(),
            Shape::Integer(_) => "i64".to_owned(),
            Shape::Float => "Float".to_owned(),
            Shape::Json => "Json".to_owned(),
            Shape::Text => match &column.enum_type {
                Some(e) => self.enum_name(e).to_owned(),
                None => "String".to_owned(),
            },
            Shape::Array(element) => format!("Vec<Option<{}>>", self.rust_type(element, column)),
        }
    }
}

/// A number, or the strings the API gives for the floats JSON has not.
const FLOAT_RS: &str = r#"/// A `real` or `double precision` value: the API gives a number, or
/// "NaN", "Infinity", "-Infinity" for the values JSON has not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float(pub f64);

impl Serialize for Float {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_nan() {
            s.serialize_str("NaN")
        } else if self.0.is_infinite() {
            s.serialize_str(if self.0 > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(f64),
            Text(String),
        }
        match Given::deserialize(d)? {
            Given::Number(n) => Ok(Float(n)),
            Given::Text(t) => match t.as_str() {
                "NaN" => Ok(Float(f64::NAN)),
                "Infinity" => Ok(Float(f64::INFINITY)),
                "-Infinity" => Ok(Float(f64::NEG_INFINITY)),
                other => Err(serde::de::Error::custom(format!("not a float: {other:?}"))),
            },
        }
    }
}
"#;

/// `#[serde(rename = …)]` where the field's name is not the column's.
fn rename(ident: &str, column: &str) -> String {
    if ident.trim_start_matches("r#") == column {
        String::new()
    } else {
        format!("    #[serde(rename = {})]\n", json_string(column))
    }
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// A TypeScript property name: as is where it is an identifier, quoted otherwise.
fn ts_property(name: &str) -> String {
    let mut chars = name.chars();
    let ident = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ident { name.to_owned() } else { json_string(name) }
}

/// The words of a name: runs of ASCII letters and digits, split also where
/// a lower-case letter meets an upper-case one.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `order_items` → `OrderItems`; a name with no letters or digits, or that
/// begins with a digit, gets a leading `X`.
fn rust_type_ident(name: &str) -> String {
    let mut ident: String = words(name)
        .iter()
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
        ident.insert(0, 'X');
    }
    if ident == "Self" {
        ident.push('_');
    }
    ident
}

/// `createdAt` → `created_at`; Rust keywords as raw identifiers.
fn rust_field_ident(name: &str) -> String {
    let mut ident = words(name).iter().map(|w| w.to_ascii_lowercase()).collect::<Vec<_>>().join("_");
    if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
        ident.insert(0, '_');
    }
    match ident.as_str() {
        "self" | "super" | "crate" | "_" => format!("{ident}_"),
        k if RUST_KEYWORDS.contains(&k) => format!("r#{ident}"),
        _ => ident,
    }
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false", "fn", "for", "gen",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct",
    "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Names handed out once each: a second `OrderItems` becomes `OrderItems2`.
#[derive(Default)]
struct Names {
    taken: HashSet<String>,
}

impl Names {
    fn unique(&mut self, wanted: String) -> String {
        let mut name = wanted.clone();
        let mut n = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{wanted}{n}");
            n += 1;
        }
        name
    }

    /// A type's name: the table's (or enum's), prefixed by its schema
    /// outside `public`; the `Insert` shape's name is kept free too.
    fn type_name(&mut self, schema: &str, name: &str) -> String {
        let base = if schema == "public" { rust_type_ident(name) } else { rust_type_ident(&format!("{schema}_{name}")) };
        let base = match base.as_str() {
            "Json" | "Float" | "Tables" => format!("{base}Table"),
            _ => base,
        };
        let mut chosen = base.clone();
        let mut n = 2;
        while self.taken.contains(&chosen) || self.taken.contains(&format!("{chosen}Insert")) {
            chosen = format!("{base}{n}");
            n += 1;
        }
        self.taken.insert(format!("{chosen}Insert"));
        self.taken.insert(chosen.clone());
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!([
            {"schema": "public", "name": "order_items", "primaryKey": ["id"], "columns": [
                {"name": "id", "type": "bigint", "typeOid": 20, "nullable": false, "default": null, "identity": "always"},
                {"name": "qty", "type": "integer", "typeOid": 23, "nullable": false, "default": "1"},
                {"name": "price", "type": "numeric(10,2)", "typeOid": 1700, "nullable": false, "default": null},
                {"name": "note", "type": "text", "typeOid": 25, "nullable": true, "default": null},
                {"name": "type", "type": "mood", "typeOid": 16500, "nullable": false, "default": null,
                 "enum": {"schema": "public", "name": "mood", "labels": ["happy", "so-so", "Happy"]}},
                {"name": "tags", "type": "text[]", "typeOid": 1009, "nullable": true, "default": null},
                {"name": "Total Cost", "type": "double precision", "typeOid": 701, "nullable": true, "default": null,
                 "generated": true},
                {"name": "weight", "type": "positive", "typeOid": 16600, "baseTypeOid": 21, "nullable": false, "default": null}
            ]},
            {"schema": "drizzle", "name": "__drizzle_migrations", "primaryKey": ["id"], "columns": [
                {"name": "id", "type": "integer", "typeOid": 23, "nullable": false, "default": "nextval(…)"}
            ]}
        ])
    }

    #[test]
    fn typescript_has_row_and_insert_shapes_as_the_api_answers() {
        let ts = generate(&schema(), Lang::TypeScript, "test").unwrap();
        assert!(ts.contains("export type Mood = \"happy\" | \"so-so\" | \"Happy\";"), "{ts}");
        assert!(ts.contains("export interface OrderItems {"), "{ts}");
        assert!(ts.contains("  id: number;\n"));
        assert!(ts.contains("  price: string;\n"));
        assert!(ts.contains("  note: string | null;\n"));
        assert!(ts.contains("  type: Mood;\n"));
        assert!(ts.contains("  tags: (string | null)[] | null;\n"));
        assert!(ts.contains("  \"Total Cost\": Float | null;\n"));
        assert!(ts.contains("  weight: number;\n"), "a domain is its base type: {ts}");
        let insert = &ts[ts.find("export interface OrderItemsInsert").unwrap()..];
        assert!(insert.contains("  id?: never;\n"), "identity always is not given: {insert}");
        assert!(insert.contains("  qty?: number;\n"));
        assert!(insert.contains("  price: string;\n"));
        assert!(insert.contains("  note?: string | null;\n"));
        assert!(insert.contains("  \"Total Cost\"?: never;\n"));
        assert!(ts.contains("  \"order_items\": { row: OrderItems; insert: OrderItemsInsert };"));
        assert!(!ts.contains("drizzle"), "Drizzle's record is left out");
    }

    #[test]
    fn rust_names_are_identifiers_and_serde_renames_to_the_columns() {
        let rs = generate(&schema(), Lang::Rust, "test").unwrap();
        assert!(rs.contains("pub struct OrderItems {"), "{rs}");
        assert!(rs.contains("    pub id: i64,\n"));
        assert!(rs.contains("    pub r#type: Mood,\n"));
        assert!(rs.contains("    #[serde(rename = \"Total Cost\")]\n    pub total_cost: Option<Float>,\n"));
        assert!(rs.contains("    pub tags: Option<Vec<Option<String>>>,\n"));
        assert!(rs.contains("    pub weight: i16,\n"));
        assert!(rs.contains("    #[serde(rename = \"so-so\")]\n    SoSo,\n"));
        assert!(rs.contains("    #[serde(rename = \"Happy\")]\n    Happy2,\n"), "labels differing in case stay apart: {rs}");
        let insert = &rs[rs.find("pub struct OrderItemsInsert").unwrap()..];
        assert!(!insert.contains("pub id:"), "identity always is left out");
        assert!(!insert.contains("total_cost"), "generated columns are left out");
        assert!(insert.contains("    pub price: String,\n"));
        assert!(insert.contains("skip_serializing_if = \"Option::is_none\")]\n    pub qty: Option<i32>,\n"));
    }

    #[test]
    fn names_are_made_valid_and_kept_apart() {
        assert_eq!(rust_type_ident("order_items"), "OrderItems");
        assert_eq!(rust_type_ident("OrderItems"), "OrderItems");
        assert_eq!(rust_type_ident("2fa codes"), "X2faCodes");
        assert_eq!(rust_field_ident("createdAt"), "created_at");
        assert_eq!(rust_field_ident("self"), "self_");
        assert_eq!(rust_field_ident("1st"), "_1st");
        assert_eq!(ts_property("a-b"), "\"a-b\"");
        assert_eq!(ts_property("$ok_1"), "$ok_1");
        let mut names = Names::default();
        assert_eq!(names.type_name("public", "order_items"), "OrderItems");
        assert_eq!(names.type_name("public", "OrderItems"), "OrderItems2");
        assert_eq!(names.type_name("public", "order_items_insert"), "OrderItemsInsert2");
        assert_eq!(names.type_name("billing", "json"), "BillingJson");
        assert_eq!(names.type_name("public", "json"), "JsonTable");
    }
}

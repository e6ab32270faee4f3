//! A new hire as the HR system announces it, parsed into typed values once, at the edge.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The fields the new-hire webhook must carry, in the order they are reported when missing.
pub const REQUIRED_FIELDS: &[&str] = &["email", "departmentCode"];

/// The optional fields with a known meaning; each must be a string when present.
const OPTIONAL_TEXT_FIELDS: &[&str] = &["id", "firstName", "lastName", "title", "phone"];

/// A syntactically plausible email address. It is kept as sent (padding and case included): the
/// pipeline's correction loop normalises it when Genesys refuses it, and the audit shows what HR sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim();
        let (local, domain) = s.split_once('@')?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && s.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\"\\".contains(c));
        ok.then(|| EmailAddress(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new hire, as stored on its job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewHire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub email: EmailAddress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub department_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The HR employee identifier, when HR sends one apart from the employee number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hire_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_email: Option<EmailAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Fields without a meaning here yet, kept for the pipeline.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a new-hire body was refused; each names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidNewHire {
    #[error("Request body must be a JSON object")]
    NotAnObject,
    #[error("Missing required fields: {}", .0.join(", "))]
    MissingFields(Vec<&'static str>),
    #[error("Invalid field {field}: expected {expected}")]
    WrongType { field: String, expected: &'static str },
    #[error("Invalid field {0}: not an email address")]
    InvalidEmail(&'static str),
    #[error("Invalid field hireDate: expected a date as YYYY-MM-DD")]
    InvalidDate,
}

/// The fields with a meaning here, in the order `Sent` keeps them.
const KNOWN_FIELDS: [&str; 11] = [
    "id",
    "email",
    "firstName",
    "lastName",
    "departmentCode",
    "title",
    "employeeId",
    "employeeNumber",
    "hireDate",
    "managerEmail",
    "phone",
];

/// One known field as the HR system sent it, before it is checked.
#[derive(Debug)]
enum Field<'a> {
    Null,
    Text(Cow<'a, str>),
    Number(serde_json::Number),
    /// A boolean, an array or an object: never right for a known field.
    Other,
}

/// A new-hire body as sent: the known fields by name (borrowed from the body where the JSON allows),
/// every other field kept as JSON. Both parsers (`SentHire::read` straight from the request
/// bytes, `NewHire::from_json` from a parsed value) fill this, so both check alike.
#[derive(Debug, Default)]
pub struct SentHire<'a> {
    known: [Option<Field<'a>>; KNOWN_FIELDS.len()],
    extra: Map<String, Value>,
}

/// Where a known field is kept in `SentHire::known`.
fn slot(key: &str) -> Option<usize> {
    KNOWN_FIELDS.iter().position(|k| *k == key)
}

impl<'a> SentHire<'a> {
    /// Reads a webhook body straight from its bytes, without building a JSON tree first (the
    /// intake's hot path). Only the body's syntax is checked here; `check` does the rest.
    pub fn read(body: &'a [u8]) -> Result<SentHire<'a>, UnreadableHire> {
        serde_json::from_slice(body).map_err(|e| match e.classify() {
            // Valid JSON of another shape (an array, a string, ...).
            serde_json::error::Category::Data => UnreadableHire::Invalid(InvalidNewHire::NotAnObject),
            _ => UnreadableHire::Malformed(e),
        })
    }

    fn put(&mut self, key: &str, field: Field<'a>) -> bool {
        match slot(key) {
            Some(i) => {
                // Later duplicates win, as in a parsed JSON object.
                self.known[i] = Some(field);
                true
            }
            None => false,
        }
    }

    fn get(&self, key: &str) -> Option<&Field<'a>> {
        slot(key).and_then(|i| self.known[i].as_ref())
    }

    /// A field's text when it was sent as a string (for the audit line of a refused body).
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Field::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// Checks the fields. Missing required fields are reported together; then the first field of
    /// the wrong type or form. The fields that are not known move into the `NewHire`; the known
    /// ones stay readable (`text`) for the audit line of a refused body.
    pub fn check(&mut self) -> Result<NewHire, InvalidNewHire> {
        // A field that is absent, null or blank counts as missing.
        let present = |k: &str| match self.get(k) {
            None | Some(Field::Null) => false,
            Some(Field::Text(s)) => !s.trim().is_empty(),
            Some(_) => true,
        };
        let missing: Vec<&'static str> = REQUIRED_FIELDS.iter().copied().filter(|k| !present(k)).collect();
        if !missing.is_empty() {
            return Err(InvalidNewHire::MissingFields(missing));
        }
        let text = |k: &str| -> Result<Option<&str>, InvalidNewHire> {
            match self.get(k) {
                None | Some(Field::Null) => Ok(None),
                Some(Field::Text(s)) => Ok(Some(s)),
                Some(_) => Err(InvalidNewHire::WrongType { field: k.to_string(), expected: "a string" }),
            }
        };
        let owned = |k: &str| text(k).map(|t| t.map(str::to_string));
        for k in REQUIRED_FIELDS.iter().chain(OPTIONAL_TEXT_FIELDS) {
            text(k)?;
        }
        let email =
            EmailAddress::parse(text("email")?.unwrap_or_default()).ok_or(InvalidNewHire::InvalidEmail("email"))?;
        let manager_email = match text("managerEmail")? {
            Some(m) if !m.trim().is_empty() => {
                Some(EmailAddress::parse(m).ok_or(InvalidNewHire::InvalidEmail("managerEmail"))?)
            }
            _ => None,
        };
        // HR systems send employee ids and numbers as text or as numbers; both mean the same.
        let text_or_number = |k: &str| match self.get(k) {
            None | Some(Field::Null) => Ok(None),
            Some(Field::Text(s)) => Ok(Some(s.to_string())),
            Some(Field::Number(n)) => Ok(Some(n.to_string())),
            Some(Field::Other) => Err(InvalidNewHire::WrongType { field: k.into(), expected: "a string or a number" }),
        };
        let employee_id = text_or_number("employeeId")?;
        let employee_number = text_or_number("employeeNumber")?;
        let hire_date = match text("hireDate")? {
            Some(d) => {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| InvalidNewHire::InvalidDate)?;
                Some(d.to_string())
            }
            None => None,
        };
        Ok(NewHire {
            id: owned("id")?,
            email,
            first_name: owned("firstName")?,
            last_name: owned("lastName")?,
            department_code: text("departmentCode")?.unwrap_or_default().trim().to_string(),
            title: owned("title")?,
            employee_id,
            employee_number,
            hire_date,
            manager_email,
            phone: owned("phone")?,
            extra: std::mem::take(&mut self.extra),
        })
    }
}

impl<'de> Deserialize<'de> for SentHire<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SentHireVisitor)
    }
}

struct SentHireVisitor;

impl<'de> Visitor<'de> for SentHireVisitor {
    type Value = SentHire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SentHire<'de>, A::Error> {
        let mut sent = SentHire::default();
        // Keys come through `Field` too, borrowed when they have no escapes; JSON keys are strings.
        while let Some(key) = map.next_key::<Field<'de>>()? {
            let Field::Text(key) = key else { return Err(de::Error::custom("an object key is not a string")) };
            match slot(&key) {
                Some(i) => sent.known[i] = Some(map.next_value()?),
                None => {
                    sent.extra.insert(key.into_owned(), map.next_value()?);
                }
            }
        }
        Ok(sent)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field::Number(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Field::Other, Field::Number))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Why a request body is not a new hire: not JSON at all, or JSON that is not one.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableHire {
    #[error("Malformed JSON: {0}")]
    Malformed(serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] InvalidNewHire),
}

impl NewHire {
    /// The person's key, sent to Genesys as `externalId`: the HR employee identifier, `employeeId`
    /// when sent, else `employeeNumber`. The event's `id` identifies the event, never the person.
    pub fn person_key(&self) -> Option<String> {
        [&self.employee_id, &self.employee_number]
            .into_iter()
            .flatten()
            .map(|k| k.trim())
            .find(|k| !k.is_empty())
            .map(str::to_string)
    }

    /// Parses a webhook body that is already a JSON value (as stored, or in tests).
    pub fn from_json(body: &Value) -> Result<NewHire, InvalidNewHire> {
        let obj = body.as_object().ok_or(InvalidNewHire::NotAnObject)?;
        let mut sent = SentHire::default();
        for (k, v) in obj {
            let field = match v {
                Value::Null => Field::Null,
                Value::String(s) => Field::Text(Cow::Borrowed(s)),
                Value::Number(n) => Field::Number(n.clone()),
                _ => Field::Other,
            };
            if !sent.put(k, field) {
                sent.extra.insert(k.clone(), v.clone());
            }
        }
        sent.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_full_body_and_keeps_extra_fields() {
        let body = json!({
            "id": "evt-1", "email": "Jane.Doe@Example.com", "firstName": "Jane", "lastName": "Doe",
            "departmentCode": "ENG", "employeeNumber": 1042, "hireDate": "2026-12-01",
            "managerEmail": "boss@example.com", "costCenter": "CC-7"
        });
        let hire = NewHire::from_json(&body).unwrap();
        assert_eq!(hire.email.as_str(), "Jane.Doe@Example.com");
        assert_eq!(hire.employee_number.as_deref(), Some("1042"));
        assert_eq!(hire.extra.get("costCenter"), Some(&json!("CC-7")));
        let back = serde_json::to_value(&hire).unwrap();
        assert_eq!(back["departmentCode"], "ENG");
        assert_eq!(back["costCenter"], "CC-7");
        assert_eq!(NewHire::from_json(&back).unwrap(), hire);
    }

    #[test]
    fn the_person_key_is_the_employee_id_else_the_employee_number_never_the_event_id() {
        let key = |v: Value| NewHire::from_json(&v).unwrap().person_key();
        let base = json!({"id": "evt-1", "email": "a@b.co", "departmentCode": "ENG"});
        assert_eq!(key(base.clone()), None);
        let mut with_number = base.clone();
        with_number["employeeNumber"] = json!(1042);
        assert_eq!(key(with_number.clone()).as_deref(), Some("1042"));
        with_number["employeeId"] = json!(" E-1042 ");
        assert_eq!(key(with_number.clone()).as_deref(), Some("E-1042"));
        with_number["employeeId"] = json!(["x"]);
        assert_eq!(
            NewHire::from_json(&with_number).unwrap_err().to_string(),
            "Invalid field employeeId: expected a string or a number"
        );
    }

    #[test]
    fn names_exactly_the_missing_fields() {
        let e = |v: Value| NewHire::from_json(&v).unwrap_err().to_string();
        assert_eq!(e(json!({})), "Missing required fields: email, departmentCode");
        assert_eq!(e(json!({"email": "a@b.co"})), "Missing required fields: departmentCode");
        assert_eq!(e(json!({"email": "  ", "departmentCode": "ENG"})), "Missing required fields: email");
        assert_eq!(e(json!({"email": null, "departmentCode": "ENG"})), "Missing required fields: email");
    }

    #[test]
    fn names_the_field_of_the_wrong_type_or_form() {
        let e = |v: Value| NewHire::from_json(&v).unwrap_err().to_string();
        assert_eq!(e(json!([1])), "Request body must be a JSON object");
        assert_eq!(e(json!({"email": 5, "departmentCode": "ENG"})), "Invalid field email: expected a string");
        assert_eq!(
            e(json!({"email": "a@b.co", "departmentCode": "ENG", "firstName": ["x"]})),
            "Invalid field firstName: expected a string"
        );
        assert_eq!(
            e(json!({"email": "not-an-address", "departmentCode": "ENG"})),
            "Invalid field email: not an email address"
        );
        assert_eq!(e(json!({"email": "a@b", "departmentCode": "ENG"})), "Invalid field email: not an email address");
        assert_eq!(
            e(json!({"email": "a@b.co", "departmentCode": "ENG", "hireDate": "01/12/2026"})),
            "Invalid field hireDate: expected a date as YYYY-MM-DD"
        );
        assert_eq!(
            e(json!({"email": "a@b.co", "departmentCode": "ENG", "managerEmail": "boss"})),
            "Invalid field managerEmail: not an email address"
        );
    }

    /// The intake reads bodies straight from bytes; stored payloads and tests go through a `Value`.
    /// Both must accept and refuse exactly alike.
    #[test]
    fn reading_bytes_and_parsing_a_value_agree() {
        let bodies = [
            r#"{"id":"evt-1","email":"Jane.Doe@Example.com","firstName":"Jane","lastName":"Doe","departmentCode":" ENG ","employeeNumber":1042,"hireDate":"2026-12-01","managerEmail":"boss@example.com","costCenter":"CC-7","tags":["a",{"b":null}]}"#,
            r#"{"email":"j\u00e9r\u00f4me@example.com","departmentCode":"SALES","title":"Lead \"A\"","employeeNumber":"E-7"}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","employeeNumber":12.5,"phone":null}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","email":"c@d.co","extra":1,"extra":2}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","employeeNumber":true}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","firstName":{"x":[1,2]}}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","lastName":false}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","managerEmail":"  "}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","managerEmail":"boss"}"#,
            r#"{"email":"a@b.co","departmentCode":"ENG","hireDate":"2026-02-30"}"#,
            r#"{"email":"  ","departmentCode":null}"#,
            r#"{"email":5,"departmentCode":"ENG"}"#,
            r#"{}"#,
            r#"[1]"#,
            r#""a string""#,
        ];
        for body in bodies {
            let value: Value = serde_json::from_str(body).unwrap();
            let by_value = NewHire::from_json(&value).map_err(|e| e.to_string());
            let by_bytes = SentHire::read(body.as_bytes()).map_err(|e| e.to_string()).and_then(|mut sent| {
                assert_eq!(sent.text("email"), value.get("email").and_then(Value::as_str), "{body}");
                sent.check().map_err(|e| e.to_string())
            });
            assert_eq!(by_bytes, by_value, "{body}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused_as_malformed_json() {
        for body in ["", "{", r#"{"email":"a@b.co",}"#, r#"{"email":"a@b.co"} trailing"#, "\u{0}"] {
            let e = SentHire::read(body.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("Malformed JSON: "), "{body:?}: {e}");
        }
    }

    #[test]
    fn padded_and_upper_case_addresses_are_accepted_as_sent() {
        let hire = NewHire::from_json(&json!({"email": "  JANE@EXAMPLE.COM ", "departmentCode": "ENG"})).unwrap();
        assert_eq!(hire.email.as_str(), "  JANE@EXAMPLE.COM ");
    }
}

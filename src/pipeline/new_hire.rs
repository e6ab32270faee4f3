//! A new hire as the HR system announces it, parsed into typed values once, at the edge.

use std::fmt;

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

impl NewHire {
    /// Parses a webhook body. Missing required fields are reported together; then the first field
    /// of the wrong type or form.
    pub fn from_json(body: &Value) -> Result<NewHire, InvalidNewHire> {
        let obj = body.as_object().ok_or(InvalidNewHire::NotAnObject)?;
        // A field that is absent, null or blank counts as missing.
        let present = |k: &str| match obj.get(k) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        };
        let missing: Vec<&'static str> = REQUIRED_FIELDS.iter().copied().filter(|k| !present(k)).collect();
        if !missing.is_empty() {
            return Err(InvalidNewHire::MissingFields(missing));
        }
        let text = |k: &str| -> Result<Option<String>, InvalidNewHire> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(InvalidNewHire::WrongType { field: k.to_string(), expected: "a string" }),
            }
        };
        for k in REQUIRED_FIELDS.iter().chain(OPTIONAL_TEXT_FIELDS) {
            text(k)?;
        }
        let email =
            EmailAddress::parse(&text("email")?.unwrap_or_default()).ok_or(InvalidNewHire::InvalidEmail("email"))?;
        let manager_email = match text("managerEmail")? {
            Some(m) if !m.trim().is_empty() => {
                Some(EmailAddress::parse(&m).ok_or(InvalidNewHire::InvalidEmail("managerEmail"))?)
            }
            _ => None,
        };
        // HR systems send employee numbers as text or as numbers; both mean the same.
        let employee_number = match obj.get("employeeNumber") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(InvalidNewHire::WrongType {
                    field: "employeeNumber".into(),
                    expected: "a string or a number",
                });
            }
        };
        let hire_date = match text("hireDate")? {
            Some(d) => {
                chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|_| InvalidNewHire::InvalidDate)?;
                Some(d)
            }
            None => None,
        };
        let known = [
            "id",
            "email",
            "firstName",
            "lastName",
            "departmentCode",
            "title",
            "employeeNumber",
            "hireDate",
            "managerEmail",
            "phone",
        ];
        let extra =
            obj.iter().filter(|(k, _)| !known.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(NewHire {
            id: text("id")?,
            email,
            first_name: text("firstName")?,
            last_name: text("lastName")?,
            department_code: text("departmentCode")?.unwrap_or_default().trim().to_string(),
            title: text("title")?,
            employee_number,
            hire_date,
            manager_email,
            phone: text("phone")?,
            extra,
        })
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

    #[test]
    fn padded_and_upper_case_addresses_are_accepted_as_sent() {
        let hire = NewHire::from_json(&json!({"email": "  JANE@EXAMPLE.COM ", "departmentCode": "ENG"})).unwrap();
        assert_eq!(hire.email.as_str(), "  JANE@EXAMPLE.COM ");
    }
}

//! The SCIM filter subset the emulator understands: `<attribute> eq <value>`, one comparison, no `and`/`or`.

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum FilterValue {
    /// A quoted string, escapes resolved.
    Str(String),
    Bool(bool),
    /// An unquoted word (Genesys documents `displayname eq Sales` for groups).
    Bare(String),
}

impl FilterValue {
    /// The value as text, whatever its form.
    pub(super) fn text(&self) -> String {
        match self {
            FilterValue::Str(s) | FilterValue::Bare(s) => s.clone(),
            FilterValue::Bool(b) => b.to_string(),
        }
    }
}

/// `attr eq value`. `attr` is lower-cased, with any schema URN prefix removed.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Filter {
    pub attr: String,
    pub value: FilterValue,
}

/// Parses `attr eq value`; the error is a human-readable reason.
pub(super) fn parse(input: &str) -> Result<Filter, String> {
    let text = input.trim();
    let attr_end = text.find(char::is_whitespace).ok_or_else(|| format!("cannot read filter {input:?}"))?;
    let raw_attr = &text[..attr_end];
    let rest = text[attr_end..].trim_start();
    let op_end = rest.find(char::is_whitespace).ok_or_else(|| format!("cannot read filter {input:?}"))?;
    let op = &rest[..op_end];
    if !op.eq_ignore_ascii_case("eq") {
        return Err(format!("operator {op:?} is not supported (only eq)"));
    }
    let rest = rest[op_end..].trim_start();
    let (value, tail) = if let Some(quoted) = rest.strip_prefix('"') {
        // The closing quote is the first one not escaped; the value between is a JSON string.
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("unterminated string in filter {input:?}"))?;
        let out: String = serde_json::from_str(&rest[..end + 1])
            .map_err(|e| format!("the quoted value in filter {input:?} is not a JSON string: {e}"))?;
        (FilterValue::Str(out), &quoted[end..])
    } else {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.is_empty() {
            return Err(format!("filter {input:?} has no value"));
        }
        let value = match word.to_ascii_lowercase().as_str() {
            "true" => FilterValue::Bool(true),
            "false" => FilterValue::Bool(false),
            _ => FilterValue::Bare(word.to_string()),
        };
        (value, &rest[end..])
    };
    if !tail.trim().is_empty() {
        return Err(format!("only a single `attribute eq value` comparison is supported, not {input:?}"));
    }
    let valid_attr = !raw_attr.is_empty()
        && raw_attr.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_' | '-' | '$'));
    if !valid_attr {
        return Err(format!("bad attribute name {raw_attr:?}"));
    }
    let lower = raw_attr.to_ascii_lowercase();
    let attr = if lower.starts_with("urn:") { lower.rsplit(':').next().unwrap_or_default().to_string() } else { lower };
    Ok(Filter { attr, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_bool_and_bare_values() {
        let f = parse(r#"userName EQ "a\"b@x.io""#).unwrap();
        assert_eq!(f, Filter { attr: "username".into(), value: FilterValue::Str("a\"b@x.io".into()) });
        assert_eq!(parse("active eq false").unwrap().value, FilterValue::Bool(false));
        assert_eq!(parse("displayname eq Sales").unwrap().value, FilterValue::Bare("Sales".into()));
        let urn = parse(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "7""#);
        assert_eq!(urn.unwrap().attr, "employeenumber");
        // Values are JSON strings: escapes resolve, a raw control character is refused.
        assert_eq!(parse(r#"externalId eq "a\nb\u0001""#).unwrap().value, FilterValue::Str("a\nb\u{1}".into()));
        assert!(parse("externalId eq \"a\nb\"").is_err());
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert!(parse(r#"userName co "a""#).is_err());
        assert!(parse(r#"userName eq "a" and active eq true"#).is_err());
        assert!(parse(r#"userName eq "a"#).is_err());
        assert!(parse("userName").is_err());
        assert!(parse("").is_err());
    }
}

//! The provisioning policy: one engine of typed rules, compiled from `[policy]` at start, that
//! judges a SCIM user (what the service is about to send to Genesys, or what Genesys holds) and
//! names every violation at once.
//!
//! It runs at intake (a new hire or directory change that violates it is refused with 422 and
//! nothing is stored), in the jobs before every create or PATCH they send (the configuration may
//! have changed since intake: such a job is dead-lettered), and at the validation webhook.
//!
//! Departments are named by their code (`[departments.<CODE>]`) everywhere in `[policy]`. A user's
//! `department` is the department's display name, which both the new-hire and the sync path write,
//! so it is resolved back to its code through the department map.
//!
//! Judging a user borrows it (`UserView`) and allocates nothing unless it finds a violation: the
//! sets are built at start (domains lower-cased), the pattern is compiled once, and messages are
//! written only for violations.

mod user;

pub use user::{COST_CENTER_AUTHORITY, UserView};

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::DepartmentMap;

/// One rule of the policy. Each can be switched off in `[policy.rules]` by its key; the rules with
/// a list or a pattern apply only when it is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `userName` is present and not blank.
    UserName,
    /// An entry of `emails` is marked `primary: true` and has a value.
    PrimaryEmail,
    /// The primary email's domain is one of `email_domains` (when set).
    EmailDomain,
    /// The user's department is one of `departments` (when set).
    Department,
    /// Every cost center the user carries matches `cost_center_pattern` (when set).
    CostCenter,
    /// Every role the user asks for is allowed for its department.
    Roles,
}

impl Rule {
    pub const ALL: [Rule; 6] =
        [Rule::UserName, Rule::PrimaryEmail, Rule::EmailDomain, Rule::Department, Rule::CostCenter, Rule::Roles];

    /// Its key in `[policy.rules]`.
    pub fn key(self) -> &'static str {
        match self {
            Rule::UserName => "user_name",
            Rule::PrimaryEmail => "primary_email",
            Rule::EmailDomain => "email_domain",
            Rule::Department => "department",
            Rule::CostCenter => "cost_center",
            Rule::Roles => "roles",
        }
    }
}

/// What a violation is, as the validation webhook's contract spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ViolationCode {
    #[serde(rename = "SCIM_MISSING_USERNAME")]
    MissingUserName,
    #[serde(rename = "SCIM_MISSING_PRIMARY_EMAIL")]
    MissingPrimaryEmail,
    #[serde(rename = "SCIM_INVALID_EMAIL_DOMAIN")]
    InvalidEmailDomain,
    #[serde(rename = "POLICY_DEPARTMENT_DENIED")]
    DepartmentDenied,
    #[serde(rename = "POLICY_COST_CENTER_MISMATCH")]
    CostCenterMismatch,
    #[serde(rename = "POLICY_ROLE_DENIED")]
    RoleDenied,
}

impl ViolationCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationCode::MissingUserName => "SCIM_MISSING_USERNAME",
            ViolationCode::MissingPrimaryEmail => "SCIM_MISSING_PRIMARY_EMAIL",
            ViolationCode::InvalidEmailDomain => "SCIM_INVALID_EMAIL_DOMAIN",
            ViolationCode::DepartmentDenied => "POLICY_DEPARTMENT_DENIED",
            ViolationCode::CostCenterMismatch => "POLICY_COST_CENTER_MISMATCH",
            ViolationCode::RoleDenied => "POLICY_ROLE_DENIED",
        }
    }
}

impl fmt::Display for ViolationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with a user: `{field, code, message}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    /// The attribute, by the validation webhook's names: `userName`, `emails`, `emails[<i>].value`,
    /// `department`, `costCenter`, `roles`.
    #[schema(value_type = String, example = "emails[0].value")]
    pub field: Cow<'static, str>,
    pub code: ViolationCode,
    /// What is wrong, in words.
    #[schema(example = "Email domain example.net is not provisioned.")]
    pub message: String,
}

/// Every violation of one user, in the order of the rules; empty when the user complies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Violation] {
        &self.0
    }

    /// `Ok` when there is none, else the violations as the error.
    pub fn into_result(self) -> Result<(), Violations> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// `provisioning policy: CODE (field): message; ...`, as a dead letter's error says it.
impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("provisioning policy: ")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} ({}): {}", v.code, v.field, v.message)?;
        }
        Ok(())
    }
}

/// `[policy]` as configured, before it is compiled (`Policy::compile`).
#[derive(Clone, Debug, Default)]
pub struct PolicySettings {
    /// Domains a primary email may have; None: any.
    pub email_domains: Option<Vec<String>>,
    /// Department codes a user may be in; None: any.
    pub departments: Option<Vec<String>>,
    /// A regular expression every cost center must match; None: any.
    pub cost_center_pattern: Option<String>,
    /// `[policy.roles]`: department code -> roles allowed besides the department's own `roles`.
    pub roles: BTreeMap<String, Vec<String>>,
    /// `[policy.rules]`: rules switched on or off; a rule not named is on.
    pub rules: BTreeMap<Rule, bool>,
}

/// The compiled policy. Cheap to share (`Arc` it); judging a user takes `&self`.
#[derive(Clone, Debug)]
pub struct Policy {
    on: [bool; Rule::ALL.len()],
    /// Lower-cased, without a leading `@`; empty: any domain.
    domains: HashSet<String>,
    departments: Vec<PolicyDepartment>,
    /// Display name (as configured) and code -> index in `departments`.
    by_name: HashMap<String, usize>,
    by_code: HashMap<String, usize>,
    /// Whether `[policy] departments` was set (else every department, and none, is allowed).
    allowlist: bool,
    cost_center: Option<regex::Regex>,
    /// What `check-config` and start-up warn about (the old `[policy.roles]` keyed by name).
    notices: Vec<String>,
}

#[derive(Clone, Debug)]
struct PolicyDepartment {
    code: String,
    name: String,
    /// In `[policy] departments` (or no such list is set).
    allowed: bool,
    /// The department's own `roles` and those `[policy.roles]` gives it.
    roles: HashSet<String>,
}

impl Default for Policy {
    /// The policy with nothing configured: only the required attributes and the department roles.
    fn default() -> Self {
        Policy::compile(PolicySettings::default(), &DepartmentMap::default(), &mut Vec::new())
    }
}

impl Policy {
    /// Compiles `[policy]` against the department map; each problem (a bad pattern with its
    /// position, a department that is not configured) is added to `problems`.
    pub fn compile(settings: PolicySettings, map: &DepartmentMap, problems: &mut Vec<String>) -> Policy {
        let mut departments = Vec::new();
        let (mut by_name, mut by_code) = (HashMap::new(), HashMap::new());
        let mut lower_names: HashMap<String, &str> = HashMap::new();
        for d in map.iter() {
            let i = departments.len();
            by_code.insert(d.code.clone(), i);
            by_name.insert(d.name.clone(), i);
            if let Some(other) = lower_names.insert(d.name.to_lowercase(), &d.code) {
                problems.push(format!(
                    "departments.{other}.name and departments.{}.name are both {:?}: a user's department is \
                     found by its name, so each department needs its own",
                    d.code, d.name
                ));
            }
            departments.push(PolicyDepartment {
                code: d.code.clone(),
                name: d.name.clone(),
                allowed: true,
                roles: d.roles.iter().cloned().collect(),
            });
        }
        let mut policy = Policy {
            on: Rule::ALL.map(|r| settings.rules.get(&r).copied().unwrap_or(true)),
            domains: HashSet::new(),
            departments,
            by_name,
            by_code,
            allowlist: settings.departments.is_some(),
            cost_center: None,
            notices: Vec::new(),
        };
        for domain in settings.email_domains.into_iter().flatten() {
            let clean = domain.trim().trim_start_matches('@').to_lowercase();
            if clean.is_empty() || clean.contains(['@', ' ']) {
                problems.push(format!("policy.email_domains: {domain:?} is not a domain like example.com"));
            } else {
                policy.domains.insert(clean);
            }
        }
        if let Some(codes) = settings.departments {
            for d in &mut policy.departments {
                d.allowed = false;
            }
            for code in codes {
                match policy.by_code.get(code.trim()) {
                    Some(&i) => policy.departments[i].allowed = true,
                    None => problems.push(policy.not_a_code("policy.departments", &code)),
                }
            }
        }
        for (key, roles) in settings.roles {
            let i = match (policy.by_code.get(&key), policy.by_name.get(&key)) {
                (Some(&i), _) => i,
                // The old form, keyed by the display name: still read, with a warning.
                (None, Some(&i)) => {
                    let code = &policy.departments[i].code;
                    policy.notices.push(format!(
                        "[policy.roles] {key:?} is a department name: the role matrix is keyed by department code \
                         now; it is read as {code} for this version, write `{code} = [...]` instead"
                    ));
                    i
                }
                (None, None) => {
                    problems.push(policy.not_a_code(&format!("policy.roles.{key}"), &key));
                    continue;
                }
            };
            for role in roles {
                if role.trim().is_empty() {
                    problems.push(format!("policy.roles.{key} has an empty role name"));
                } else {
                    policy.departments[i].roles.insert(role);
                }
            }
        }
        if let Some(pattern) = settings.cost_center_pattern {
            match compile_pattern(&pattern) {
                Ok(re) => policy.cost_center = Some(re),
                Err(e) => problems
                    .push(format!("policy.cost_center_pattern {pattern:?} is not a valid regular expression: {e}")),
            }
        }
        policy
    }

    /// The problem of a department named by something that is not a configured code.
    fn not_a_code(&self, setting: &str, value: &str) -> String {
        match self.by_name.get(value.trim()) {
            Some(&i) => format!(
                "{setting}: {value:?} is the name of [departments.{code}]; name departments by their code here: \
                 {code:?}",
                code = self.departments[i].code
            ),
            None => format!(
                "{setting}: {value:?} is not a configured department code (one of: {})",
                self.departments.iter().map(|d| d.code.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Judges one user: every violation, in the order of the rules. Allocates only for violations.
    pub fn evaluate(&self, user: &UserView<'_>) -> Violations {
        let mut found = Vec::new();
        if self.is_on(Rule::UserName) && user.user_name.is_none_or(|n| n.trim().is_empty()) {
            found.push(violation("userName", ViolationCode::MissingUserName, || {
                "userName is required and cannot be empty.".to_string()
            }));
        }
        match user.primary_email {
            None if self.is_on(Rule::PrimaryEmail) => {
                found.push(violation("emails", ViolationCode::MissingPrimaryEmail, || {
                    "A primary email address is required.".to_string()
                }));
            }
            Some((index, email)) if self.is_on(Rule::EmailDomain) && !self.domains.is_empty() => {
                let domain = email.trim().rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                if !self.domain_allowed(domain) {
                    let field = match index {
                        0 => Cow::Borrowed("emails[0].value"),
                        i => Cow::Owned(format!("emails[{i}].value")),
                    };
                    found.push(Violation {
                        field,
                        code: ViolationCode::InvalidEmailDomain,
                        message: format!("Email domain {} is not provisioned.", Shown(domain)),
                    });
                }
            }
            _ => {}
        }
        let department = user.department.map(str::trim).filter(|d| !d.is_empty());
        let resolved = department.and_then(|d| self.department(d));
        if let Some(name) = department
            && self.is_on(Rule::Department)
            && self.allowlist
            && !resolved.is_some_and(|d| d.allowed)
        {
            found.push(violation("department", ViolationCode::DepartmentDenied, || {
                format!("Department {} is not in the approved list.", Shown(name))
            }));
        }
        if let Some(pattern) = self.cost_center.as_ref().filter(|_| self.is_on(Rule::CostCenter)) {
            for cost_center in user.cost_centers().filter(|c| !pattern.is_match(c)) {
                found.push(violation("costCenter", ViolationCode::CostCenterMismatch, || {
                    format!("Cost center {} does not match pattern {}.", Shown(cost_center), pattern.as_str())
                }));
            }
        }
        if self.is_on(Rule::Roles) {
            for role in user.roles().filter(|r| !resolved.is_some_and(|d| d.roles.contains(*r))) {
                found.push(violation("roles", ViolationCode::RoleDenied, || match department {
                    Some(name) => {
                        format!("Role {} is not in the approved list for department {}.", Shown(role), Shown(name))
                    }
                    None => format!("Role {} is not approved for a user without a department.", Shown(role)),
                }));
            }
        }
        Violations(found)
    }

    fn is_on(&self, rule: Rule) -> bool {
        self.on[rule as usize]
    }

    /// Compared without regard to ASCII case; a domain already in lower case (the usual) is one
    /// set lookup.
    fn domain_allowed(&self, domain: &str) -> bool {
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
        } else {
            self.domains.contains(domain)
        }
    }

    /// A user's department value as a configured department: by its display name (what the
    /// service writes), else by its code, else by its name in another letter case.
    fn department(&self, value: &str) -> Option<&PolicyDepartment> {
        let index = self.by_name.get(value).or_else(|| self.by_code.get(value)).copied();
        match index {
            Some(i) => self.departments.get(i),
            None => self.departments.iter().find(|d| d.name.eq_ignore_ascii_case(value)),
        }
    }

    /// The code of the department a user's department value names, when it is configured.
    pub fn department_code(&self, value: &str) -> Option<&str> {
        self.department(value.trim()).map(|d| d.code.as_str())
    }

    /// Warnings for check-config and start-up (the deprecated `[policy.roles]` keyed by name).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Every role name the policy allows anywhere (check-config --probe looks each up).
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.departments.iter().flat_map(|d| d.roles.iter().map(String::as_str))
    }

    /// What `check-config` prints: the rules that apply and their settings.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let on = |rule: Rule| if self.is_on(rule) { "" } else { " (switched off)" };
        lines.push(format!("  required: userName{}, a primary email{}", on(Rule::UserName), on(Rule::PrimaryEmail)));
        let mut domains: Vec<&str> = self.domains.iter().map(String::as_str).collect();
        domains.sort_unstable();
        lines.push(match domains.is_empty() {
            true => "  email domains: any".to_string(),
            false => format!("  email domains: {}{}", domains.join(", "), on(Rule::EmailDomain)),
        });
        lines.push(match self.allowlist {
            false => "  departments: any".to_string(),
            true => {
                let allowed: Vec<&str> =
                    self.departments.iter().filter(|d| d.allowed).map(|d| d.code.as_str()).collect();
                format!("  departments: {}{}", allowed.join(", "), on(Rule::Department))
            }
        });
        lines.push(match &self.cost_center {
            None => "  cost center: any".to_string(),
            Some(re) => format!("  cost center: matches {}{}", re.as_str(), on(Rule::CostCenter)),
        });
        for d in &self.departments {
            let mut roles: Vec<&str> = d.roles.iter().map(String::as_str).collect();
            roles.sort_unstable();
            lines.push(format!("  roles of {} ({}): {}{}", d.code, d.name, roles.join(", "), on(Rule::Roles)));
        }
        lines
    }
}

/// The most bytes of a user's value a message repeats: a message must not echo a megabyte.
const SHOWN_MAX: usize = 256;

/// A value as a message shows it: at most `SHOWN_MAX` bytes, cut at a character boundary.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.len() <= SHOWN_MAX {
            return f.write_str(text);
        }
        let mut cut = SHOWN_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        write!(f, "{}…(truncated, {} bytes)", &text[..cut], text.len())
    }
}

/// A violation whose message is written only now that it is one.
fn violation(field: &'static str, code: ViolationCode, message: impl FnOnce() -> String) -> Violation {
    Violation { field: Cow::Borrowed(field), code, message: message() }
}

/// The pattern compiled; a syntax error names its place (`regex-syntax` parses it first, as the
/// `regex` crate itself does, and gives the span).
fn compile_pattern(pattern: &str) -> Result<regex::Regex, String> {
    if let Err(e) = regex_syntax::Parser::new().parse(pattern) {
        let (kind, span) = match &e {
            regex_syntax::Error::Parse(e) => (e.kind().to_string(), *e.span()),
            regex_syntax::Error::Translate(e) => (e.kind().to_string(), *e.span()),
            other => return Err(other.to_string()),
        };
        let at = span.start;
        return Err(match at.line {
            1 => format!("{kind} at column {}", at.column),
            line => format!("{kind} at line {line}, column {}", at.column),
        });
    }
    // Past the syntax, only a size limit can refuse it; its text is several lines.
    regex::Regex::new(pattern).map_err(|e| e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;
    use crate::genesys::types::{SCHEMA_ENTERPRISE, SCHEMA_GENESYS};

    const DEPARTMENTS: &str = "[departments.ENG]\nname = \"Engineering\"\n\
        group_id = \"a1b2c3d4-5678-90ab-cdef-1234567890ab\"\nroles = [\"employee\"]\n\
        [departments.SALES]\nname = \"Sales\"\ngroup_id = \"c3d4e5f6-7890-12cd-efab-34567890abcd\"\n";

    fn env() -> BTreeMap<String, String> {
        [("HR_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), ("ADMIN_TOKEN", "an-admin-token-long-enough")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(text: &str) -> Policy {
        let config = Config::from_toml(&format!("{text}\n{DEPARTMENTS}"), &env()).unwrap_or_else(|e| panic!("{e}"));
        (*config.policy).clone()
    }

    fn strict() -> Policy {
        policy(
            "[policy]\nemail_domains = [\"Example.com\", \"@example.org\"]\ndepartments = [\"ENG\"]\n\
             cost_center_pattern = \"^CC-[0-9]{4}$\"\n[policy.roles]\nENG = [\"agent\", \"supervisor\"]\n",
        )
    }

    fn user(email: &str, department: &str, cost_center: &str, roles: &[&str]) -> Value {
        json!({
            "userName": email,
            "emails": [{"value": email, "type": "work", "primary": true}],
            SCHEMA_ENTERPRISE: {"department": department},
            SCHEMA_GENESYS: {"externalIds": [{"authority": "costCenter", "value": cost_center}]},
            "roles": roles.iter().map(|r| json!({"value": r})).collect::<Vec<_>>()
        })
    }

    fn codes(policy: &Policy, user: &Value) -> Vec<&'static str> {
        policy.evaluate(&UserView::of_json(user)).0.iter().map(|v| v.code.as_str()).collect()
    }

    #[test]
    fn a_compliant_user_has_no_violation() {
        let p = strict();
        assert!(
            p.evaluate(&UserView::of_json(&user("a@example.com", "Engineering", "CC-1234", &["agent"]))).is_empty()
        );
        // Domains and department names in another letter case, the department by its code.
        assert!(p.evaluate(&UserView::of_json(&user("a@EXAMPLE.org", "ENG", "CC-0001", &["employee"]))).is_empty());
        assert!(p.evaluate(&UserView::of_json(&user("a@example.com", "engineering", "CC-0001", &[]))).is_empty());
    }

    #[test]
    fn every_violation_is_named_at_once_with_the_seed_texts() {
        let p = strict();
        let bad = json!({
            "userName": " ",
            "emails": [{"value": "x@other.net", "primary": false}],
            "department": "Marketing",
            "costCenter": "9999",
            "roles": [{"value": "admin"}]
        });
        let found = p.evaluate(&UserView::of_json(&bad));
        let expected = json!([
            {"field": "userName", "code": "SCIM_MISSING_USERNAME", "message": "userName is required and cannot be empty."},
            {"field": "emails", "code": "SCIM_MISSING_PRIMARY_EMAIL", "message": "A primary email address is required."},
            {"field": "department", "code": "POLICY_DEPARTMENT_DENIED", "message": "Department Marketing is not in the approved list."},
            {"field": "costCenter", "code": "POLICY_COST_CENTER_MISMATCH", "message": "Cost center 9999 does not match pattern ^CC-[0-9]{4}$."},
            {"field": "roles", "code": "POLICY_ROLE_DENIED", "message": "Role admin is not in the approved list for department Marketing."}
        ]);
        assert_eq!(serde_json::to_value(&found).unwrap(), expected);

        let second = json!({"userName": "a", "emails": [{"value": "a@x"}, {"value": "a@other.net", "primary": true}]});
        let found = p.evaluate(&UserView::of_json(&second));
        assert_eq!(
            serde_json::to_value(&found).unwrap(),
            json!([{"field": "emails[1].value", "code": "SCIM_INVALID_EMAIL_DOMAIN", "message": "Email domain other.net is not provisioned."}])
        );
        assert_eq!(
            found.to_string(),
            "provisioning policy: SCIM_INVALID_EMAIL_DOMAIN (emails[1].value): Email domain other.net is not provisioned."
        );
    }

    #[test]
    fn roles_follow_the_department_map_and_the_matrix() {
        let p = strict();
        assert_eq!(
            codes(&p, &user("a@example.com", "Sales", "CC-1234", &["agent"])),
            ["POLICY_DEPARTMENT_DENIED", "POLICY_ROLE_DENIED"]
        );
        assert_eq!(
            codes(&p, &user("a@example.com", "Engineering", "CC-1234", &["agent", "admin"])),
            ["POLICY_ROLE_DENIED"]
        );
        let none = json!({"userName": "a", "emails": [{"value": "a@example.com", "primary": true}], "roles": [{"value": "agent"}]});
        let found = p.evaluate(&UserView::of_json(&none));
        assert_eq!(found.0[0].message, "Role agent is not approved for a user without a department.");
    }

    #[test]
    fn each_rule_can_be_switched_off() {
        let bad = json!({"emails": [{"value": "x@other.net", "primary": true}], "department": "Marketing", "costCenter": "9", "roles": [{"value": "admin"}]});
        let base =
            "[policy]\nemail_domains = [\"example.com\"]\ndepartments = [\"ENG\"]\ncost_center_pattern = \"^CC-\"\n";
        let all = [
            ("user_name", "SCIM_MISSING_USERNAME"),
            ("email_domain", "SCIM_INVALID_EMAIL_DOMAIN"),
            ("department", "POLICY_DEPARTMENT_DENIED"),
            ("cost_center", "POLICY_COST_CENTER_MISMATCH"),
            ("roles", "POLICY_ROLE_DENIED"),
        ];
        assert_eq!(codes(&policy(base), &bad), all.map(|(_, c)| c));
        for (rule, code) in all {
            let off = policy(&format!("{base}[policy.rules]\n{rule} = false\n"));
            let left = codes(&off, &bad);
            assert!(!left.contains(&code) && left.len() == all.len() - 1, "{rule}: {left:?}");
        }
        let no_primary = json!({"userName": "a", "emails": [{"value": "a@example.com"}]});
        assert_eq!(codes(&policy(base), &no_primary), ["SCIM_MISSING_PRIMARY_EMAIL"]);
        assert!(codes(&policy(&format!("{base}[policy.rules]\nprimary_email = false\n")), &no_primary).is_empty());
    }

    #[test]
    fn without_settings_only_the_required_attributes_and_department_roles_apply() {
        let p = policy("");
        assert!(codes(&p, &user("a@anything.example", "Anything", "whatever", &[])).is_empty());
        assert!(
            codes(&p, &user("a@x.example", "Engineering", "", &["employee"])).is_empty(),
            "the department's own role"
        );
        assert_eq!(codes(&p, &user("a@x.example", "Engineering", "", &["admin"])), ["POLICY_ROLE_DENIED"]);
    }

    #[test]
    fn a_bad_pattern_is_reported_with_its_column_and_departments_by_code() {
        let text = format!(
            "[policy]\ncost_center_pattern = \"^CC-[0-9{{4}}$\"\ndepartments = [\"Engineering\", \"OPS\"]\n\
             email_domains = [\"not a domain\"]\n[policy.roles]\nNOPE = [\"agent\"]\n{DEPARTMENTS}"
        );
        let err = Config::from_toml(&text, &env()).unwrap_err();
        assert_eq!(
            err.problems,
            [
                "policy.email_domains: \"not a domain\" is not a domain like example.com",
                "policy.departments: \"Engineering\" is the name of [departments.ENG]; name departments by their code here: \"ENG\"",
                "policy.departments: \"OPS\" is not a configured department code (one of: ENG, SALES)",
                "policy.roles.NOPE: \"NOPE\" is not a configured department code (one of: ENG, SALES)",
                "policy.cost_center_pattern \"^CC-[0-9{4}$\" is not a valid regular expression: unclosed character class at column 5",
            ]
        );
    }

    #[test]
    fn the_old_role_matrix_by_name_is_read_with_a_warning() {
        let text = format!("[policy.roles]\nSales = [\"agent\"]\n{DEPARTMENTS}");
        let config = Config::from_toml(&text, &env()).unwrap();
        assert!(codes(&config.policy, &user("a@x.example", "Sales", "", &["agent"])).is_empty());
        let warnings = config.warnings().join("\n");
        assert!(warnings.contains("[policy.roles] \"Sales\" is a department name"), "{warnings}");
        assert!(warnings.contains("write `SALES = [...]` instead"), "{warnings}");
    }
}

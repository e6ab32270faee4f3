//! The registration of the event subscription in Genesys Cloud, idempotent: found by its name,
//! created when missing, updated where it differs from `[genesys_events]`, left alone otherwise.
//!
//! - eventbridge: an `amazon-eventbridge-source` integration (create, then its config, then enable it).
//! - process-automation: a trigger on the configured topic, after checking the org offers that topic
//!   to triggers (the user audit topic is not: that is what the eventbridge route is for).
//!
//! A dry run reads what Genesys holds and returns the writes it would make, making none.

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{EventsRoute, GenesysEventsConfig};
use crate::genesys::events::{
    CreateIntegrationRequest, EVENTBRIDGE_TYPE, INTEGRATIONS, IdRef, IntegrationConfiguration, IntegrationState,
    TRIGGERS, Trigger, TriggerTarget, WorkflowTargetSettings,
};
use crate::genesys::{GenesysClient, GenesysError};

/// What registering did (or, in a dry run, would do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// One write to Genesys, as sent (or to be sent).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(body) = &self.body {
            write!(f, " {body}")?;
        }
        Ok(())
    }
}

/// The answer of a registration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub status: Outcome,
    pub route: &'static str,
    pub name: String,
    /// The Genesys ids: `integrationId` or `triggerId` (absent in a dry run that would create).
    pub ids: Value,
    /// What differed from the config (`updated`), e.g. `properties.eventFilter`, `intendedState`.
    pub differences: Vec<String>,
    /// The writes made (or, with `dryRun`, the ones that would be).
    pub calls: Vec<Call>,
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("no [genesys_events] section is configured: nothing to register")]
    NotConfigured,
    #[error(
        "topic {topic:?} is not offered to Process Automation triggers in this org \
         (GET /api/v2/processautomation/triggers/topics); use route = \"eventbridge\" (the Amazon EventBridge integration carries the user audit topic)"
    )]
    TopicUnavailable { topic: String },
    #[error("no Genesys credentials are configured")]
    NoClient,
    #[error(transparent)]
    Genesys(#[from] GenesysError),
}

fn route_name(route: &EventsRoute) -> &'static str {
    match route {
        EventsRoute::EventBridge { .. } => "eventbridge",
        EventsRoute::ProcessAutomation { .. } => "process-automation",
    }
}

fn to_value<T: Serialize>(body: &T) -> Option<Value> {
    serde_json::to_value(body).ok()
}

/// Registers (or, with `dry_run`, plans to register) the subscription `config` describes.
pub async fn register(
    client: &GenesysClient,
    config: &GenesysEventsConfig,
    dry_run: bool,
) -> Result<Registration, RegisterError> {
    if !config.configured {
        return Err(RegisterError::NotConfigured);
    }
    match &config.route {
        EventsRoute::EventBridge { .. } => register_integration(client, config, dry_run).await,
        EventsRoute::ProcessAutomation { .. } => register_trigger(client, config, dry_run).await,
    }
}

/// The integration config's `properties` the route asks for (Genesys's Terraform module's names).
fn desired_properties(route: &EventsRoute) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    if let EventsRoute::EventBridge { aws_account_id, aws_region, event_source_suffix, topic_filters } = route {
        map.insert("eventSourceSuffix".into(), json!(event_source_suffix));
        map.insert("awsAccountId".into(), json!(aws_account_id));
        map.insert("awsAccountRegion".into(), json!(aws_region));
        map.insert("eventFilter".into(), json!(topic_filters));
    }
    map
}

async fn register_integration(
    client: &GenesysClient,
    config: &GenesysEventsConfig,
    dry_run: bool,
) -> Result<Registration, RegisterError> {
    let desired = desired_properties(&config.route);
    let found = client.find_integration(&config.name, EVENTBRIDGE_TYPE).await?;
    let mut calls = Vec::new();
    let enable = IntegrationState { intended_state: "ENABLED".to_string() };
    let Some(integration) = found else {
        let create = CreateIntegrationRequest {
            name: config.name.clone(),
            integration_type: IdRef { id: EVENTBRIDGE_TYPE.to_string() },
        };
        let mut configuration = IntegrationConfiguration {
            name: config.name.clone(),
            version: 1,
            properties: Value::Object(desired),
            advanced: json!({}),
            notes: Some("managed by genesys-provisioner register-webhook".to_string()),
        };
        let (id, ids) = if dry_run {
            ("{new integration id}".to_string(), json!({}))
        } else {
            let made = client.create_integration(&create).await?;
            // The config's version is the one Genesys made with the integration.
            configuration.version = client.integration_config(&made.id).await?.version;
            (made.id.clone(), json!({"integrationId": made.id}))
        };
        calls.push(Call { method: "POST", path: INTEGRATIONS.to_string(), body: to_value(&create) });
        let config_path = format!("{INTEGRATIONS}/{id}/config/current");
        calls.push(Call { method: "PUT", path: config_path, body: to_value(&configuration) });
        calls.push(Call { method: "PATCH", path: format!("{INTEGRATIONS}/{id}"), body: to_value(&enable) });
        if !dry_run {
            client.put_integration_config(&id, &configuration).await?;
            client.set_integration_state(&id, "ENABLED").await?;
        }
        return Ok(Registration {
            status: Outcome::Created,
            route: "eventbridge",
            name: config.name.clone(),
            ids,
            differences: Vec::new(),
            calls,
            dry_run,
        });
    };
    let id = integration.id.clone();
    let current = client.integration_config(&id).await?;
    let mut differences: Vec<String> = desired
        .iter()
        .filter(|(key, want)| current.properties.get(key.as_str()) != Some(want))
        .map(|(key, _)| format!("properties.{key}"))
        .collect();
    if differences.iter().any(|d| d.starts_with("properties.")) {
        let mut properties = current.properties.as_object().cloned().unwrap_or_default();
        properties.extend(desired);
        let configuration = IntegrationConfiguration {
            name: current.name.clone(),
            version: current.version,
            properties: Value::Object(properties),
            advanced: if current.advanced.is_null() { json!({}) } else { current.advanced.clone() },
            notes: current.notes.clone(),
        };
        calls.push(Call {
            method: "PUT",
            path: format!("{INTEGRATIONS}/{id}/config/current"),
            body: to_value(&configuration),
        });
        if !dry_run {
            client.put_integration_config(&id, &configuration).await?;
        }
    }
    if integration.intended_state.as_deref() != Some("ENABLED") {
        differences.push("intendedState".to_string());
        calls.push(Call { method: "PATCH", path: format!("{INTEGRATIONS}/{id}"), body: to_value(&enable) });
        if !dry_run {
            client.set_integration_state(&id, "ENABLED").await?;
        }
    }
    Ok(Registration {
        status: if differences.is_empty() { Outcome::Unchanged } else { Outcome::Updated },
        route: "eventbridge",
        name: config.name.clone(),
        ids: json!({"integrationId": id}),
        differences,
        calls,
        dry_run,
    })
}

fn desired_trigger(config: &GenesysEventsConfig) -> Trigger {
    let (workflow_id, topic_name, match_criteria) = match &config.route {
        EventsRoute::ProcessAutomation { workflow_id, topic_name, match_criteria } => {
            (workflow_id.clone(), topic_name.clone(), match_criteria.clone())
        }
        EventsRoute::EventBridge { .. } => Default::default(),
    };
    Trigger {
        id: None,
        name: config.name.clone(),
        topic_name,
        target: TriggerTarget {
            kind: "Workflow".to_string(),
            id: workflow_id,
            workflow_target_settings: Some(WorkflowTargetSettings { data_format: "Json".to_string() }),
        },
        version: None,
        enabled: true,
        match_criteria,
        description: Some("managed by genesys-provisioner register-webhook".to_string()),
    }
}

async fn register_trigger(
    client: &GenesysClient,
    config: &GenesysEventsConfig,
    dry_run: bool,
) -> Result<Registration, RegisterError> {
    let desired = desired_trigger(config);
    if !client.trigger_topics().await?.contains(&desired.topic_name) {
        return Err(RegisterError::TopicUnavailable { topic: desired.topic_name });
    }
    let found = client.find_trigger(&config.name).await?;
    let mut calls = Vec::new();
    let Some(current) = found else {
        calls.push(Call { method: "POST", path: TRIGGERS.to_string(), body: to_value(&desired) });
        let ids = if dry_run {
            json!({})
        } else {
            let made = client.create_trigger(&desired).await?;
            json!({"triggerId": made.id})
        };
        return Ok(Registration {
            status: Outcome::Created,
            route: "process-automation",
            name: config.name.clone(),
            ids,
            differences: Vec::new(),
            calls,
            dry_run,
        });
    };
    let id = current.id.clone().unwrap_or_default();
    let mut differences = Vec::new();
    if current.topic_name != desired.topic_name {
        differences.push("topicName".to_string());
    }
    if current.target.id != desired.target.id || current.target.kind != desired.target.kind {
        differences.push("target".to_string());
    }
    if current.match_criteria != desired.match_criteria {
        differences.push("matchCriteria".to_string());
    }
    if !current.enabled {
        differences.push("enabled".to_string());
    }
    if !differences.is_empty() {
        let update = Trigger { id: Some(id.clone()), version: current.version, ..desired };
        calls.push(Call { method: "PUT", path: format!("{TRIGGERS}/{id}"), body: to_value(&update) });
        if !dry_run {
            client.update_trigger(&id, &update).await?;
        }
    }
    Ok(Registration {
        status: if differences.is_empty() { Outcome::Unchanged } else { Outcome::Updated },
        route: "process-automation",
        name: config.name.clone(),
        ids: json!({"triggerId": id}),
        differences,
        calls,
        dry_run,
    })
}

/// The registration as Genesys holds it; None when there is none by the configured name.
pub async fn show(client: &GenesysClient, config: &GenesysEventsConfig) -> Result<Option<Value>, RegisterError> {
    if !config.configured {
        return Err(RegisterError::NotConfigured);
    }
    match &config.route {
        EventsRoute::EventBridge { .. } => {
            let Some(found) = client.find_integration(&config.name, EVENTBRIDGE_TYPE).await? else {
                return Ok(None);
            };
            let current = client.integration_config(&found.id).await?;
            Ok(Some(json!({
                "route": route_name(&config.route),
                "name": found.name,
                "ids": {"integrationId": found.id},
                "enabled": found.intended_state.as_deref() == Some("ENABLED"),
                "intendedState": found.intended_state,
                "topics": current.properties.get("eventFilter").cloned().unwrap_or(Value::Null),
                "properties": current.properties,
                "configVersion": current.version,
            })))
        }
        EventsRoute::ProcessAutomation { .. } => {
            let Some(found) = client.find_trigger(&config.name).await? else {
                return Ok(None);
            };
            Ok(Some(json!({
                "route": route_name(&config.route),
                "name": found.name,
                "ids": {"triggerId": found.id, "workflowId": found.target.id},
                "enabled": found.enabled,
                "topics": [found.topic_name],
                "matchCriteria": found.match_criteria,
                "version": found.version,
            })))
        }
    }
}

/// Removes the registration; the ids removed, None when there was none.
pub async fn remove(client: &GenesysClient, config: &GenesysEventsConfig) -> Result<Option<Value>, RegisterError> {
    if !config.configured {
        return Err(RegisterError::NotConfigured);
    }
    match &config.route {
        EventsRoute::EventBridge { .. } => {
            let Some(found) = client.find_integration(&config.name, EVENTBRIDGE_TYPE).await? else {
                return Ok(None);
            };
            client.delete_integration(&found.id).await?;
            Ok(Some(json!({"integrationId": found.id})))
        }
        EventsRoute::ProcessAutomation { .. } => {
            let Some(found) = client.find_trigger(&config.name).await? else {
                return Ok(None);
            };
            let id = found.id.unwrap_or_default();
            client.delete_trigger(&id).await?;
            Ok(Some(json!({"triggerId": id})))
        }
    }
}

/// What the AWS side of the eventbridge route needs, filled in from the config: the partner event
/// source Genesys creates, an event rule pattern for the user audit topic, and the API destination
/// that calls the service with the API-key header. The org id and the key's value are left for the
/// operator (the key is `GENESYS_EVENTS_SECRET`, never printed).
pub fn aws_side(config: &GenesysEventsConfig) -> Option<Value> {
    let EventsRoute::EventBridge { aws_account_id, aws_region, event_source_suffix, topic_filters } = &config.route
    else {
        return None;
    };
    let source = format!("aws.partner/genesys.com/cloud/<your Genesys org id>/{event_source_suffix}");
    // The topics arrive with the ids filled in (`detail-type`), so the rule matches their prefix.
    let prefixes: Vec<Value> =
        topic_filters.iter().map(|t| json!({"prefix": t.split("{id}").next().unwrap_or(t)})).collect();
    Some(json!({
        "awsAccountId": aws_account_id,
        "awsRegion": aws_region,
        "partnerEventSource": source,
        "eventRulePattern": {"source": [source], "detail-type": prefixes},
        "connection": {
            "AuthorizationType": "API_KEY",
            "AuthParameters": {"ApiKeyAuthParameters": {
                "ApiKeyName": config.secret_header.as_str(),
                "ApiKeyValue": "<the value of GENESYS_EVENTS_SECRET>"
            }}
        },
        "apiDestination": {
            "InvocationEndpoint": config.callback_url.clone().unwrap_or_else(|| "https://<this service>/webhooks/genesys/events".to_string()),
            "HttpMethod": "POST",
            "InvocationRateLimitPerSecond": 5
        }
    }))
}

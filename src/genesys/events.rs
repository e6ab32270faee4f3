//! Typed calls of the two ways Genesys Cloud sends events out (genesys-api.md, "Events out of
//! Genesys Cloud"): the integrations API (`amazon-eventbridge-source`) and the Process Automation
//! triggers API. The bodies keep to the SDK models `CreateIntegrationRequest`, `IntegrationConfiguration`,
//! `Integration` and `Trigger`; nothing outside them is sent (`POST /api/v2/webhooks` does not exist).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{GenesysClient, GenesysError};

pub const INTEGRATIONS: &str = "/api/v2/integrations";
pub const TRIGGERS: &str = "/api/v2/processautomation/triggers";
pub const TRIGGER_TOPICS: &str = "/api/v2/processautomation/triggers/topics";
/// The integration type of Genesys's EventBridge source.
pub const EVENTBRIDGE_TYPE: &str = "amazon-eventbridge-source";

/// `{id}` reference (the models' `IntegrationType` as sent: only its id).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IdRef {
    #[serde(default)]
    pub id: String,
}

/// `CreateIntegrationRequest`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIntegrationRequest {
    pub name: String,
    pub integration_type: IdRef,
}

/// `Integration` as read (the attributes this service uses).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_type: Option<IdRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_state: Option<String>,
}

/// The `PATCH /api/v2/integrations/{id}` body: an `Integration` with only its intended state.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationState {
    pub intended_state: String,
}

/// `IntegrationConfiguration`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationConfiguration {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub properties: Value,
    #[serde(default)]
    pub advanced: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// `TriggerTarget`: the Architect workflow a trigger starts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_target_settings: Option<WorkflowTargetSettings>,
}

/// `WorkflowTargetSettings`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTargetSettings {
    pub data_format: String,
}

/// `Trigger`, as sent (create, update) and read.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub topic_name: String,
    #[serde(default)]
    pub target: TriggerTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub match_criteria: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A listing: `{entities: [...]}` (paging fields ignored; the lists read here are short).
#[derive(Debug, Deserialize)]
struct Entities<T> {
    #[serde(default = "Vec::new")]
    entities: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct Topic {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl GenesysClient {
    /// The integration named `name` whose type is `type_id` (or untyped), read page by page (100 a
    /// page) until found or a short page ends the list.
    pub async fn find_integration(&self, name: &str, type_id: &str) -> Result<Option<Integration>, GenesysError> {
        const PAGE: usize = 100;
        // A bound, in case a server ignores pageNumber and answers the same full page for ever.
        for page in 1..=100 {
            let path = format!("{INTEGRATIONS}?pageSize={PAGE}&pageNumber={page}");
            let entities =
                self.send::<()>(Method::GET, &path, None, None).await?.json::<Entities<Integration>>()?.entities;
            let last = entities.len() < PAGE;
            if let Some(found) = entities
                .into_iter()
                .find(|i| i.name == name && i.integration_type.as_ref().is_none_or(|t| t.id == type_id))
            {
                return Ok(Some(found));
            }
            if last {
                break;
            }
        }
        Ok(None)
    }

    pub async fn create_integration(&self, body: &CreateIntegrationRequest) -> Result<Integration, GenesysError> {
        self.send(Method::POST, INTEGRATIONS, Some(body), None).await?.json()
    }

    pub async fn integration_config(&self, id: &str) -> Result<IntegrationConfiguration, GenesysError> {
        self.send::<()>(Method::GET, &format!("{INTEGRATIONS}/{id}/config/current"), None, None).await?.json()
    }

    pub async fn put_integration_config(
        &self,
        id: &str,
        config: &IntegrationConfiguration,
    ) -> Result<IntegrationConfiguration, GenesysError> {
        self.send(Method::PUT, &format!("{INTEGRATIONS}/{id}/config/current"), Some(config), None).await?.json()
    }

    pub async fn set_integration_state(&self, id: &str, state: &str) -> Result<Integration, GenesysError> {
        let body = IntegrationState { intended_state: state.to_string() };
        self.send(Method::PATCH, &format!("{INTEGRATIONS}/{id}"), Some(&body), None).await?.json()
    }

    pub async fn delete_integration(&self, id: &str) -> Result<(), GenesysError> {
        self.send::<()>(Method::DELETE, &format!("{INTEGRATIONS}/{id}"), None, None).await.map(|_| ())
    }

    /// The Process Automation trigger named `name`.
    pub async fn find_trigger(&self, name: &str) -> Result<Option<Trigger>, GenesysError> {
        let triggers = self.send::<()>(Method::GET, TRIGGERS, None, None).await?.json::<Entities<Trigger>>()?.entities;
        Ok(triggers.into_iter().find(|t| t.name == name))
    }

    pub async fn create_trigger(&self, trigger: &Trigger) -> Result<Trigger, GenesysError> {
        self.send(Method::POST, TRIGGERS, Some(trigger), None).await?.json()
    }

    pub async fn update_trigger(&self, id: &str, trigger: &Trigger) -> Result<Trigger, GenesysError> {
        self.send(Method::PUT, &format!("{TRIGGERS}/{id}"), Some(trigger), None).await?.json()
    }

    pub async fn delete_trigger(&self, id: &str) -> Result<(), GenesysError> {
        self.send::<()>(Method::DELETE, &format!("{TRIGGERS}/{id}"), None, None).await.map(|_| ())
    }

    /// The topic names the org offers to triggers.
    pub async fn trigger_topics(&self) -> Result<Vec<String>, GenesysError> {
        let listing: Entities<Topic> = self.send::<()>(Method::GET, TRIGGER_TOPICS, None, None).await?.json()?;
        Ok(listing.entities.into_iter().filter_map(|t| t.id.or(t.name)).collect())
    }
}

//! A user event out of Genesys Cloud (`AuditTopicAuditLogMessage`), as a job: an echo of this
//! service's own write (its OAuth client is the `clientId`) is recorded and stops there; any other
//! change is recorded as an outside change, with who made it and which properties changed.

use serde_json::{Value, json};

/// The OAuth client that acted: `clientId` is an `AuditTopicAddressableEntityRef` (`{id}`); a plain
/// string is read too (a workflow may flatten it).
fn client_id(event: &Value) -> Option<&str> {
    let client = event.get("clientId")?;
    client.get("id").and_then(Value::as_str).or_else(|| client.as_str())
}

/// What the job records of one event; `own_client_id` is this service's OAuth client.
pub fn judge(payload: &Value, own_client_id: Option<&str>) -> Value {
    let event = payload.get("eventBody").unwrap_or(&Value::Null);
    let entity = event.get("entity").and_then(|e| e.get("id")).cloned().unwrap_or(Value::Null);
    let acted = client_id(event);
    let echo = acted.is_some() && acted == own_client_id;
    let changed: Vec<Value> = event
        .get("propertyChanges")
        .and_then(Value::as_array)
        .map(|changes| changes.iter().filter_map(|c| c.get("property").cloned()).collect())
        .unwrap_or_default();
    json!({
        "action": if echo { "echo" } else { "outside_change" },
        "topicName": payload.get("topicName"),
        "auditEventId": event.get("id"),
        "entityType": event.get("entityType"),
        "entityId": entity,
        "eventAction": event.get("action"),
        "clientId": acted,
        "userId": event.get("userId"),
        "changedProperties": changed,
    })
}

#[cfg(test)]
mod tests {
    use super::judge;
    use serde_json::json;

    #[test]
    fn the_service_s_own_client_is_an_echo_and_any_other_an_outside_change() {
        let payload = |client: serde_json::Value| {
            json!({"topicName": "t", "eventBody": {"id": "a1", "clientId": client, "action": "Update",
                "entityType": "User", "entity": {"id": "u-1"},
                "propertyChanges": [{"property": "title", "oldValues": ["A"], "newValues": ["B"]}]}})
        };
        let own = judge(&payload(json!({"id": "me"})), Some("me"));
        assert_eq!(own["action"], "echo");
        let other = judge(&payload(json!({"id": "someone-else"})), Some("me"));
        assert_eq!((&other["action"], &other["changedProperties"]), (&json!("outside_change"), &json!(["title"])));
        assert_eq!(judge(&payload(json!("me")), Some("me"))["action"], "echo", "a flattened client id");
        assert_eq!(judge(&payload(json!(null)), None)["action"], "outside_change", "no client id is no echo");
    }
}

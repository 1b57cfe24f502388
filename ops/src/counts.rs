//! Message counts of the queue and its dead-letter queue, from the management API's entity description (the REST
//! runtime API has no count, and walking the live queue would lock the handler's messages).

use cmk_handler::azure::servicebus::ServiceBusClient;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub active: u64,
    pub scheduled: u64,
    pub dead_letter: u64,
}

/// Reads the counts of `entity` (a queue, or `topic/subscriptions/sub`).
pub async fn counts(client: &ServiceBusClient, entity: &str) -> Result<Counts, String> {
    let xml = client.entity_description(entity).await.map_err(|e| e.to_string())?;
    parse(&xml).ok_or_else(|| format!("{entity}: the description has no CountDetails (does the entity exist?)"))
}

/// `CountDetails` of an Atom entry, whatever prefix its namespace has.
pub fn parse(xml: &str) -> Option<Counts> {
    let details = &xml[xml.find("CountDetails")?..];
    let number = |name: &str| -> Option<u64> {
        let at = details.find(&format!("{name}>"))? + name.len() + 1;
        details[at..].split('<').next()?.trim().parse().ok()
    };
    Some(Counts {
        active: number("ActiveMessageCount")?,
        scheduled: number("ScheduledMessageCount")?,
        dead_letter: number("DeadLetterMessageCount")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_count_details() {
        // Shape of a real answer (Azure SDK for JS test recording of `GET /{queue}?api-version=…`).
        let xml = r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription><MessageCount>7</MessageCount><CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus"><d2p1:ActiveMessageCount>5</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>2</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>0</d2p1:ScheduledMessageCount></CountDetails></QueueDescription></content></entry>"#;
        assert_eq!(parse(xml), Some(Counts { active: 5, scheduled: 0, dead_letter: 2 }));
        assert_eq!(parse(r#"<feed xmlns="http://www.w3.org/2005/Atom"></feed>"#), None, "unknown entity");
    }
}

//! The one management operation `cmkctl` reads: `GET https://{ns}/{queue}` or `GET …/{topic}/subscriptions/{sub}`
//! (`?api-version=2021-05`), which answers an Atom entry whose description carries the runtime `CountDetails`
//! (active, dead-lettered, scheduled). Only the counts, the message count and the status are filled in; an unknown
//! entity answers an empty feed with 200, as Service Bus does.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use crate::http::Req;
use crate::state::Shared;

pub fn entity(shared: &Shared, namespace: &str, req: &Req) -> Response {
    let path = percent_decode_str(req.url.path().trim_matches('/')).decode_utf8_lossy().into_owned();
    let self_link = format!("https://{}/{path}?api-version=2021-05", req.host());
    let atom = |body: String| {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/atom+xml;type=entry;charset=utf-8")], body)
            .into_response()
    };
    let Ok((active, scheduled, dead)) = shared.bus.counts(namespace, &path) else {
        return atom(format!(
            r#"<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Publicly Listed Services</title><id>{}</id><updated>{}</updated></feed>"#,
            xml(&self_link),
            now(shared)
        ));
    };
    let kind = if path.to_ascii_lowercase().contains("/subscriptions/") {
        "SubscriptionDescription"
    } else {
        "QueueDescription"
    };
    let name = path.rsplit('/').next().unwrap_or(&path);
    atom(format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom"><id>{link}</id><title type="text">{name}</title><updated>{now}</updated><link rel="self" href="{link}"/><content type="application/xml"><{kind} xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><MessageCount>{total}</MessageCount><Status>Active</Status><CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus"><d2p1:ActiveMessageCount>{active}</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>{dead}</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>{scheduled}</d2p1:ScheduledMessageCount><d2p1:TransferMessageCount>0</d2p1:TransferMessageCount><d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount></CountDetails></{kind}></content></entry>"#,
        link = xml(&self_link),
        name = xml(name),
        now = now(shared),
        total = active + scheduled + dead,
    ))
}

fn now(shared: &Shared) -> String {
    shared.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

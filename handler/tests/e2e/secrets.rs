//! No token, assertion, key material or connection string in anything the run printed or published.

use crate::testbed::{SAS_KEY, contoso};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_or_published() {
    let bed = crate::testbed::start().await;
    bed.send(&contoso("obd-secrets"), "msg-secrets");
    bed.send(b"{ broken", "msg-secrets-poison");
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_until("poison dead-lettered", |bed| bed.dead_letters().len() == 1).await;

    let mut everything = bed.host().handler_output();
    everything.extend(bed.host().function_logs());
    everything.extend(
        bed.peek(crate::testbed::ALL_EVENTS)
            .iter()
            .map(|m| format!("{} {:?}", String::from_utf8_lossy(&m.body), m.application_properties)),
    );
    everything.extend(bed.dead_letters().iter().map(|m| format!("{:?}", m.application_properties)));
    let text = everything.join("\n");
    assert!(text.len() > 1000, "the run printed something to scan");
    // Emulator tokens are JWTs: base64url of `{"` starts every one of them.
    for needle in ["eyJ", SAS_KEY, "client_assertion", "SharedAccessSignature", "access_token", "BEGIN PRIVATE KEY"] {
        assert!(
            !text.contains(needle),
            "found {needle:?} in the output:\n{}",
            text.lines().find(|l| l.contains(needle)).unwrap_or("")
        );
    }
    let identity_header = &bed.emulator.shared().identity_header;
    assert!(!text.contains(identity_header.as_str()), "the managed-identity header secret leaked");
}

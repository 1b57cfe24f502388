//! The default trigger encoding still works end to end: without `"dataType": "binary"` the host double-encodes the
//! body and copies its top-level properties into `Metadata`; the handler completes the onboarding all the same.

use cmk_testbed::TestBed;

use crate::testbed::{CONTOSO_ACCOUNT, contoso, handler, sample_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_string_encoding_is_accepted() {
    let bed = TestBed::start_custom(handler(), sample_scenario(), &[], |app| {
        let path = app.join("ProcessOnboarding/function.json");
        let mut definition: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let trigger = definition["bindings"][0].as_object_mut().unwrap();
        assert_eq!(trigger.remove("dataType"), Some("binary".into()), "the shipped trigger declares binary");
        std::fs::write(&path, serde_json::to_vec(&definition).unwrap()).unwrap();
    })
    .await;
    bed.send(&contoso("obd-string-form"), "msg-string-form");
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    let account = bed.storage_account(CONTOSO_ACCOUNT);
    assert_eq!(account["properties"]["encryption"]["keySource"], "Microsoft.Keyvault");
}

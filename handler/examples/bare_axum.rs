//! The cold-start floor for `benches/handler.rs`: a bare axum server that answers the host's readiness probe and does
//! nothing else, with the handler's runtime (`#[tokio::main]`, multi-threaded) and dependencies. The benchmark builds
//! it with the handler's profile and compares the two start-ups in one run.

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("FUNCTIONS_CUSTOMHANDLER_PORT");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ready" })) }));
    axum::serve(listener, app).await.expect("serve");
}

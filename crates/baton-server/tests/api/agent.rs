//! A raw agent for the API tests: enroll a device through the API and open its WebSocket as the
//! agent would, so protocol behaviour is tested without the agent crate.

use baton_proto::{
    agent::{AgentMessage, PROTOCOL_VERSION},
    api::enrollment::{EnrollRequest, EnrollResponse, EnrollmentTokenCreate},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Error, Message, client::IntoClientRequest},
};

use crate::support::{TestApp, raw};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Enrolls `serial` with a fresh enrollment token of its own.
pub async fn enroll(app: &TestApp, serial: &str) -> EnrollResponse {
    let token = EnrollmentTokenCreate { name: serial.into(), ..Default::default() };
    let token = app.admin.create_enrollment_token(&token).await.expect("token").secret;
    let req = EnrollRequest { token, serial: serial.into(), inventory: None, csr: None };
    let response = raw().post(format!("{}/api/v1/enroll", app.url)).json(&req).send().await.expect("enroll");
    response.json().await.expect("json")
}

/// Opens the agent WebSocket for `device_id` with `secret`.
pub async fn connect(app: &TestApp, device_id: &str, secret: &str) -> Result<Ws, Error> {
    let url = format!("{}/api/v1/agent/connect", app.url.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {secret}").parse().expect("header"));
    request.headers_mut().insert("x-baton-device-id", device_id.parse().expect("header"));
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

/// The `hello` frame an agent opens with.
pub fn hello(backlog_epoch: Option<u64>) -> Message {
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "test".into(),
        inventory: Box::default(),
        backlog_epoch,
        features: Vec::new(),
    };
    Message::Text(serde_json::to_string(&hello).expect("json").into())
}

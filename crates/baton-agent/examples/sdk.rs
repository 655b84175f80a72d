//! The device SDK in a few lines: an application on a kiosk embeds the agent, reports its own
//! metric (orders per minute) next to the system's, and handles a custom command
//! (`open-drawer`) that operators send from Baton:
//!
//! ```sh
//! cargo run -p baton-agent --example sdk -- http://localhost:8080 be_<enrollment token>
//! baton commands send --device <id> custom open-drawer --params '{"drawer": 2}'
//! ```

use std::{collections::BTreeMap, time::Duration};

use baton_agent::{Agent, AgentConfig};

#[tokio::main]
async fn main() -> Result<(), baton_agent::AgentError> {
    let mut args = std::env::args().skip(1);
    let config = AgentConfig {
        server: args.next(),
        enrollment_token: args.next(),
        state_dir: std::env::temp_dir().join("baton-sdk-example"),
        serial: Some("SDK-EXAMPLE-1".into()),
        ..AgentConfig::default()
    };
    let agent = Agent::builder(config)
        .on_command("open-drawer", |params| async move {
            let drawer = params.get("drawer").and_then(|d| d.as_u64()).ok_or("params need a `drawer` number")?;
            // Drive the hardware here.
            Ok(serde_json::json!({ "opened": drawer }))
        })
        .build()?;

    let handle = agent.handle();
    tokio::spawn(async move {
        let mut orders = 0.0;
        loop {
            orders += 3.0;
            let metrics = BTreeMap::from([("app.orders_per_minute".to_owned(), orders % 40.0)]);
            if handle.push_metrics(metrics).await.is_err() {
                break; // the agent stopped
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });

    let exit = agent.run(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!("agent ended: {:?}", exit.await?);
    Ok(())
}

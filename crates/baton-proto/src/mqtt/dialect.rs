//! The topic contract: what each topic a device publishes to means, and which topic filters a
//! device may subscribe to. Two dialects share the listener: Baton's own
//! (`baton/v1/{device id or "me"}/…`, see docs/mqtt.md) and ThingsBoard's device and gateway API
//! (`v1/devices/me/…`, `v1/gateway/…`). Every device has its own namespace: ThingsBoard's `me`
//! topics mean "this connection's device", and a filter that could match anything outside the
//! device's namespace (`#`, `+/…`, another device's id) is refused.

/// Whose topic: the connected device, or a device named by id (itself or one of the
/// sub-devices it relays; the session decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Me,
    Id(&'a str),
}

/// What a device's PUBLISH means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound<'a> {
    Telemetry(Target<'a>),
    Attributes(Target<'a>),
    Inventory(Target<'a>),
    Status(Target<'a>),
    CommandResult(Target<'a>, &'a str),
    /// `baton/v1/{id}/deployments/{execution}/state`: how an update goes on the device.
    DeploymentState(Target<'a>, &'a str),
    /// ThingsBoard's `v2/fw/request/{request}/chunk/{n}`: the next piece of a firmware image.
    FirmwareChunk(&'a str, &'a str),
    AttributesRequest(&'a str),
    RpcResponse(&'a str),
    RpcRequest(&'a str),
    GatewayConnect,
    GatewayDisconnect,
    GatewayTelemetry,
    GatewayAttributes,
    GatewayRpc,
}

pub const PROVISION_REQUEST: &str = "/provision/request";
pub const PROVISION_RESPONSE: &str = "/provision/response";

/// The meaning of a topic a device published to; `None` for anything outside the contract.
pub fn inbound(topic: &str) -> Option<Inbound<'_>> {
    let levels: Vec<&str> = topic.split('/').collect();
    Some(match levels.as_slice() {
        ["baton", "v1", id, rest @ ..] if !id.is_empty() => {
            let target = if *id == "me" { Target::Me } else { Target::Id(id) };
            match rest {
                ["telemetry"] => Inbound::Telemetry(target),
                ["attributes"] => Inbound::Attributes(target),
                ["inventory"] => Inbound::Inventory(target),
                ["status"] => Inbound::Status(target),
                ["commands", command, "result"] if !command.is_empty() => Inbound::CommandResult(target, command),
                ["deployments", execution, "state"] if !execution.is_empty() => {
                    Inbound::DeploymentState(target, execution)
                }
                _ => return None,
            }
        }
        ["v1", "devices", "me", "telemetry"] => Inbound::Telemetry(Target::Me),
        ["v1", "devices", "me", "attributes"] => Inbound::Attributes(Target::Me),
        ["v1", "devices", "me", "attributes", "request", id] if !id.is_empty() => Inbound::AttributesRequest(id),
        ["v1", "devices", "me", "rpc", "response", id] if !id.is_empty() => Inbound::RpcResponse(id),
        ["v1", "devices", "me", "rpc", "request", id] if !id.is_empty() => Inbound::RpcRequest(id),
        ["v2", "fw", "request", request, "chunk", n] if !request.is_empty() && !n.is_empty() => {
            Inbound::FirmwareChunk(request, n)
        }
        ["v1", "gateway", "connect"] => Inbound::GatewayConnect,
        ["v1", "gateway", "disconnect"] => Inbound::GatewayDisconnect,
        ["v1", "gateway", "telemetry"] => Inbound::GatewayTelemetry,
        ["v1", "gateway", "attributes"] => Inbound::GatewayAttributes,
        ["v1", "gateway", "rpc"] => Inbound::GatewayRpc,
        _ => return None,
    })
}

/// Whose namespace a topic filter lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOwner<'a> {
    /// The connected device's own topics (`baton/v1/me/…`, `v1/devices/me/…`).
    Me,
    /// `baton/v1/{id}/…`: allowed when `id` is the device or a sub-device it relays.
    Device(&'a str),
    /// `v1/gateway/…`: the gateway API of this connection.
    Gateway,
    /// Outside every namespace a device may read.
    Nobody,
}

/// The namespace of a (valid) topic filter. The level naming the namespace must be literal, and
/// something must follow it, so no filter reaches past the device's own topics.
pub fn filter_owner(filter: &str) -> FilterOwner<'_> {
    let levels: Vec<&str> = filter.split('/').collect();
    match levels.as_slice() {
        ["baton", "v1", id, _, ..] if is_literal(id) => {
            if *id == "me" {
                FilterOwner::Me
            } else {
                FilterOwner::Device(id)
            }
        }
        ["v1", "devices", "me", _, ..] => FilterOwner::Me,
        // ThingsBoard's firmware chunks come back on a topic without the device in it; they
        // are only ever sent to the connection that asked.
        ["v2", "fw", "response", _, ..] => FilterOwner::Me,
        ["v1", "gateway", _, ..] => FilterOwner::Gateway,
        _ => FilterOwner::Nobody,
    }
}

fn is_literal(level: &str) -> bool {
    !level.is_empty() && level != "+" && level != "#"
}

/// Topics the server publishes to a device, in Baton's dialect. Both spellings are offered:
/// the device's id and `me`; the session sends on whichever the device subscribed to.
pub fn native(device_id: &str, is_me: bool, rest: &str) -> Vec<String> {
    let mut topics = vec![format!("baton/v1/{device_id}/{rest}")];
    if is_me {
        topics.push(format!("baton/v1/me/{rest}"));
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_literal_namespaces_can_be_subscribed() {
        assert_eq!(filter_owner("baton/v1/me/commands/+"), FilterOwner::Me);
        assert_eq!(filter_owner("baton/v1/abc/#"), FilterOwner::Device("abc"));
        assert_eq!(filter_owner("v1/devices/me/rpc/request/+"), FilterOwner::Me);
        assert_eq!(filter_owner("v1/gateway/rpc"), FilterOwner::Gateway);
        for refused in [
            "#",
            "+/v1/x/#",
            "baton/#",
            "baton/v1/+/commands/+",
            "baton/v1/#",
            "baton/v1/abc",
            "v1/#",
            "v1/devices/+/rpc",
            "v1/devices/me",
            "v1/gateway",
            "/provision/response",
            "$SYS/#",
        ] {
            assert_eq!(filter_owner(refused), FilterOwner::Nobody, "{refused}");
        }
    }

    #[test]
    fn topics_mean_what_the_contract_says() {
        assert_eq!(inbound("baton/v1/me/telemetry"), Some(Inbound::Telemetry(Target::Me)));
        assert_eq!(inbound("baton/v1/d1/commands/c1/result"), Some(Inbound::CommandResult(Target::Id("d1"), "c1")));
        assert_eq!(inbound("v1/devices/me/rpc/response/7"), Some(Inbound::RpcResponse("7")));
        assert_eq!(inbound("v1/gateway/telemetry"), Some(Inbound::GatewayTelemetry));
        assert_eq!(inbound("baton/v1/me/deployments/e1/state"), Some(Inbound::DeploymentState(Target::Me, "e1")));
        assert_eq!(inbound("v2/fw/request/3/chunk/0"), Some(Inbound::FirmwareChunk("3", "0")));
        assert_eq!(filter_owner("v2/fw/response/+/chunk/+"), FilterOwner::Me);
        for nothing in ["baton/v1/d1/other", "v1/devices/other/telemetry", "a/b", "baton/v1//telemetry"] {
            assert_eq!(inbound(nothing), None, "{nothing}");
        }
    }
}

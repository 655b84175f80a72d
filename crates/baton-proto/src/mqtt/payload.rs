//! What device payloads hold, checked: telemetry in the shapes ThingsBoard firmware sends (and
//! Baton's own topics accept the same), attribute objects, command results and RPC answers.

use std::collections::BTreeMap;

use crate::{agent::Sample, api::commands::CommandResult};
use serde_json::{Map, Value};

/// Telemetry: `{"temp":21.5}`, `{"ts":1732630000000,"values":{"temp":21.5}}` (ms), or an array
/// of either. Numbers are stored, booleans as 1 and 0; other values (strings, objects) are
/// skipped and counted. Returns the samples and how many values were skipped.
pub fn telemetry(value: &Value, now: i64) -> Result<(Vec<Sample>, usize), String> {
    let mut samples = Vec::new();
    let mut skipped = 0;
    let mut one = |v: &Value| -> Result<(), String> {
        let Value::Object(object) = v else {
            return Err("telemetry must be a JSON object or an array of objects".into());
        };
        let (ts, values) = match (object.get("ts"), object.get("values")) {
            (Some(ts), Some(Value::Object(values))) => {
                (ts.as_i64().ok_or("`ts` must be an integer number of milliseconds")?, values)
            }
            (Some(_), Some(_)) => return Err("`values` must be an object".into()),
            _ => (now, object),
        };
        let mut metrics = BTreeMap::new();
        for (name, value) in values {
            match value {
                Value::Number(n) => {
                    metrics.insert(name.clone(), n.as_f64().unwrap_or(f64::NAN));
                }
                Value::Bool(b) => {
                    metrics.insert(name.clone(), if *b { 1.0 } else { 0.0 });
                }
                _ => skipped += 1,
            }
        }
        samples.push(Sample { ts, metrics });
        Ok(())
    };
    match value {
        Value::Array(items) => items.iter().try_for_each(&mut one)?,
        other => one(other)?,
    }
    Ok((samples, skipped))
}

/// A JSON object, or why the payload is not one.
pub fn object(payload: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the payload must be a JSON object".into()),
        Err(e) => Err(format!("the payload is not JSON: {e}")),
    }
}

/// Any JSON value, or why the payload is not JSON.
pub fn json(payload: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(payload).map_err(|e| format!("the payload is not JSON: {e}"))
}

/// A device's answer to a command in Baton's dialect: `{"state": "acked"|"succeeded"|"failed",
/// "result": {exit_code, stdout, stderr, error, output}}`, both optional (the state defaults to
/// succeeded; a result that is not of that shape is kept as `output`).
pub fn command_result(payload: &[u8]) -> Result<(String, Option<CommandResult>), String> {
    let object = object(payload)?;
    let state = match object.get("state") {
        None => "succeeded".to_owned(),
        Some(Value::String(s)) if ["acked", "succeeded", "failed"].contains(&s.as_str()) => s.clone(),
        Some(_) => return Err("`state` must be \"acked\", \"succeeded\" or \"failed\"".into()),
    };
    let result = object.get("result").map(|r| {
        serde_json::from_value::<CommandResult>(r.clone())
            .unwrap_or_else(|_| CommandResult { output: Some(r.clone()), ..CommandResult::default() })
    });
    Ok((state, result))
}

/// A ThingsBoard RPC answer: any JSON (kept as `output`); an object with an `error` member
/// means the call failed.
pub fn rpc_answer(value: Value) -> (bool, CommandResult) {
    let error = value.get("error").map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string()));
    let failed = error.is_some();
    (!failed, CommandResult { error, output: Some(value), ..CommandResult::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thingsboard_telemetry_shapes_are_understood() {
        let (s, skipped) = telemetry(&json!({"temp": 21.5, "on": true, "label": "x"}), 5).expect("ok");
        assert_eq!((s.len(), s[0].ts, s[0].metrics["temp"], s[0].metrics["on"], skipped), (1, 5, 21.5, 1.0, 1));
        let (s, _) = telemetry(&json!({"ts": 1000, "values": {"hum": 40}}), 5).expect("ok");
        assert_eq!((s[0].ts, s[0].metrics["hum"]), (1000, 40.0));
        let (s, _) = telemetry(&json!([{"temp": 1}, {"ts": 7, "values": {"temp": 2}}]), 5).expect("ok");
        assert_eq!(s.len(), 2);
        assert!(telemetry(&json!("hot"), 5).is_err());
        assert!(telemetry(&json!({"ts": "yesterday", "values": {"t": 1}}), 5).is_err());
    }

    #[test]
    fn results_default_to_success_and_keep_odd_shapes_as_output() {
        assert_eq!(command_result(b"{}").expect("ok").0, "succeeded");
        let (state, result) = command_result(br#"{"state":"failed","result":{"error":"jammed"}}"#).expect("ok");
        assert_eq!((state.as_str(), result.and_then(|r| r.error).as_deref()), ("failed", Some("jammed")));
        let (_, result) = command_result(br#"{"result":[1,2]}"#).expect("ok");
        assert_eq!(result.and_then(|r| r.output), Some(json!([1, 2])));
        assert!(command_result(br#"{"state":"done"}"#).is_err());
        assert!(command_result(b"not json").is_err());
        assert!(!rpc_answer(json!({"error": "no such method"})).0);
    }
}

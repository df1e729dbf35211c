use super::*;

fn endpoint(types: Option<&[&str]>, channels: Option<&[&str]>) -> Endpoint {
    let now = Utc::now();
    let mut settings = EndpointSettings::new(EndpointUrl::parse("https://example.com/").unwrap());
    settings.filter_types = types.map(|t| t.iter().map(|s| EventTypeName::parse(*s).unwrap()).collect());
    settings.channels = channels.map(|c| c.iter().map(|s| Channel::parse(*s).unwrap()).collect());
    Endpoint {
        id: EndpointId::new(),
        app_id: AppId::new(),
        uid: None,
        settings,
        created_at: now,
        updated_at: now,
    }
}

fn chans(c: &[&str]) -> Vec<Channel> {
    c.iter().map(|s| Channel::parse(*s).unwrap()).collect()
}

#[test]
fn no_filters_receive_everything() {
    let ep = endpoint(None, None);
    assert!(ep.subscribes("a.b", None));
    assert!(ep.subscribes("a.b", Some(&chans(&["x"]))));
    let ep = endpoint(Some(&[]), Some(&[]));
    assert!(ep.subscribes("a.b", None));
}

#[test]
fn type_filter_matches_exact_names() {
    let ep = endpoint(Some(&["invoice.paid", "user.created"]), None);
    assert!(ep.subscribes("invoice.paid", None));
    assert!(!ep.subscribes("invoice", None));
    assert!(!ep.subscribes("invoice.paid.late", None));
}

#[test]
fn channel_filter_needs_a_shared_channel() {
    let ep = endpoint(None, Some(&["eu", "us"]));
    assert!(!ep.subscribes("a", None));
    assert!(!ep.subscribes("a", Some(&chans(&["asia"]))));
    assert!(ep.subscribes("a", Some(&chans(&["asia", "us"]))));
}

#[test]
fn disabled_endpoints_receive_nothing() {
    let mut ep = endpoint(None, None);
    ep.settings.disabled = true;
    assert!(!ep.subscribes("a", None));
}

#[test]
fn response_is_cut_at_limit_on_char_boundary() {
    let body = "é".repeat(3000).into_bytes();
    let text = truncate_response(&body);
    assert!(text.len() <= RESPONSE_BODY_LIMIT + 3);
    assert!(text.starts_with("éé"));
}

#[test]
fn settings_store_as_camel_case_json_with_ms_and_template_source() {
    let mut s = EndpointSettings::new(EndpointUrl::parse("https://example.com/h").unwrap());
    s.timeout = Duration::from_millis(2500);
    s.throttle_rate = Some(7);
    s.filter_types = Some(vec![EventTypeName::parse("a.b").unwrap()]);
    s.payload_template = Some(PayloadTemplate::parse(r#"{"id": "{{msg.id}}"}"#).unwrap());
    let json: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert!(
        json.get("transformation").is_none(),
        "absent when unset, as rows written before it"
    );
    assert_eq!(json["timeoutMs"], 2500);
    assert_eq!(json["throttleRate"], 7);
    assert_eq!(json["filterTypes"], serde_json::json!(["a.b"]));
    assert_eq!(json["channels"], serde_json::Value::Null);
    assert_eq!(json["payloadTemplate"], r#"{"id": "{{msg.id}}"}"#);
    let back: EndpointSettings = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn a_transformation_is_stored_as_source_and_compiled_once_per_target() {
    let mut s = EndpointSettings::new(EndpointUrl::parse("https://example.com/h").unwrap());
    s.transformation = Some("{id: .msg.id}".to_owned());
    let json: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(json["transformation"], "{id: .msg.id}");
    let back: EndpointSettings = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
    let now = Utc::now();
    let ep = |settings| Endpoint {
        id: EndpointId::new(),
        app_id: AppId::new(),
        uid: Some(Uid::parse("door-1").unwrap()),
        settings,
        created_at: now,
        updated_at: now,
    };
    let target = DeliveryTarget::new(ep(s.clone()), Vec::new());
    assert_eq!(target.uid.as_ref().map(Uid::as_str), Some("door-1"));
    assert!(matches!(&target.transformation, Some(Ok(t)) if t.source() == "{id: .msg.id}"));
    s.transformation = Some("{id: nosuch}".to_owned());
    let target = DeliveryTarget::new(ep(s), Vec::new());
    assert!(
        matches!(target.transformation, Some(Err(_))),
        "kept as an error, not dropped"
    );
}

#[test]
fn error_kinds_round_trip_through_their_names() {
    for kind in [
        AttemptErrorKind::Status,
        AttemptErrorKind::Timeout,
        AttemptErrorKind::Connect,
        AttemptErrorKind::Tls,
        AttemptErrorKind::Dns,
        AttemptErrorKind::Blocked,
        AttemptErrorKind::Other,
        AttemptErrorKind::Transformation,
    ] {
        assert_eq!(AttemptErrorKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(AttemptErrorKind::Transformation.as_str(), "transformation");
}

#[test]
fn stored_settings_that_do_not_load_are_errors() {
    let good = serde_json::to_value(EndpointSettings::new(EndpointUrl::parse("https://e.com/").unwrap())).unwrap();
    let with = |key: &str, v: serde_json::Value| {
        let mut j = good.clone();
        j[key] = v;
        serde_json::from_value::<EndpointSettings>(j)
    };
    assert!(with("payloadTemplate", "{not json".into()).is_err());
    assert!(with("payloadTemplate", "\"scalar\"".into()).is_err());
    assert!(with("timeoutMs", 0.into()).is_err());
    assert!(with("timeoutMs", (-5).into()).is_err());
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("url");
    assert!(serde_json::from_value::<EndpointSettings>(missing).is_err());
}

//! The Grafana dashboard (`examples/grafana/token-exchange.json`) and the Prometheus alerting
//! rules (`examples/prometheus/alerts.yml`) name only metrics that a running service exports,
//! and the dashboard shows every metric it exports: so neither can drift from `src/metrics.rs`.
//!
//! Every PromQL expression is read (the dashboard's `targets[].expr` at any depth and its
//! variable queries; every rule's `expr`), and every identifier in it that starts with
//! `token_exchange_` must be a series name in `/metrics` of apps that were driven through every
//! path that creates a series. Histograms count by their `_bucket`/`_sum`/`_count` series.
//!
//! `alerts.yml` is read line by line, without a YAML library (none is a dependency), so it keeps
//! a simple shape, which its header repeats:
//! - each rule is a list item `- alert: Name` (or `- record: name`), its other keys indented
//!   two columns deeper than its dash;
//! - a value is on its key's line (`for: 5m`, quotes optional), or follows `key: |` or `key: >`
//!   on lines indented deeper than the key;
//! - nested maps (`labels:`, `annotations:`) have their keys on the following, deeper lines;
//! - no flow collections (`{...}`, `[...]`), anchors, multi-line plain scalars or comments after
//!   a value inside a rule (whole-line comments are fine).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::*;

const DASHBOARD: &str = "examples/grafana/token-exchange.json";
const ALERTS: &str = "examples/prometheus/alerts.yml";
const PREFIX: &str = "token_exchange_";

fn read_example(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read_example(DASHBOARD)).unwrap_or_else(|error| panic!("{DASHBOARD} is not JSON: {error}"))
}

// ------------------------------------------------------------------------------------------
// The dashboard
// ------------------------------------------------------------------------------------------

/// Every panel, rows included, at any depth (collapsed rows nest their panels).
fn every_panel(panels: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for panel in panels.as_array().into_iter().flatten() {
        found.push(panel);
        found.extend(every_panel(&panel["panels"]));
    }
    found
}

/// Every panel that is not a row, at any depth.
fn leaf_panels(panels: &Value) -> Vec<&Value> {
    every_panel(panels).into_iter().filter(|panel| panel["type"] != "row").collect()
}

/// (where, PromQL) for every query of the dashboard: panel targets and variable queries.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in leaf_panels(&dashboard["panels"]) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let (title, ref_id) = (panel["title"].as_str().unwrap_or("?"), target["refId"].as_str().unwrap_or("?"));
            queries.push((format!("panel \"{title}\" target {ref_id}"), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let query = variable["query"].get("query").unwrap_or(&variable["query"]);
        let place = format!("variable {}", variable["name"]);
        for text in [query.as_str(), variable["definition"].as_str()].into_iter().flatten() {
            queries.push((place.clone(), text.to_owned()));
        }
    }
    queries
}

#[test]
fn the_dashboard_is_grafana_json_with_a_title_panels_and_a_prometheus_datasource_variable() {
    let dashboard = dashboard();

    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()), "a title");
    assert!(dashboard["uid"].as_str().is_some_and(|t| !t.is_empty()), "a fixed uid, so links survive imports");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "Grafana 10+ schema");
    let top = dashboard["panels"].as_array().expect("a panels array");
    assert!(!top.is_empty());
    let variables = dashboard["templating"]["list"].as_array().expect("templating variables");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable named datasource"
    );

    let panels = leaf_panels(&dashboard["panels"]);
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in every_panel(&dashboard["panels"]) {
        assert!(ids.insert(panel["id"].as_u64().expect("a numeric panel id")), "panel id {} twice", panel["id"]);
        let grid = &panel["gridPos"];
        assert!(["h", "w", "x", "y"].iter().all(|k| grid[k].is_u64()), "gridPos of {}", panel["title"]);
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24, "{} is wider than the grid", panel);
    }
    for panel in panels {
        let title = &panel["title"];
        assert!(title.as_str().is_some_and(|t| !t.is_empty()), "a panel without a title: {panel}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title} queries the chosen datasource");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title} has no targets"));
        assert!(!targets.is_empty(), "{title} has no targets");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert!(target["expr"].as_str().is_some_and(|e| e.contains(PREFIX)), "{title}: {target}");
            assert!(ref_ids.insert(target["refId"].as_str().expect("a refId")), "{title}: refId twice");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// The alerting rules
// ------------------------------------------------------------------------------------------

/// One rule of the rule file: its first line and its keys as dotted paths (`labels.severity`).
struct Rule {
    line: usize,
    fields: BTreeMap<String, String>,
}

impl Rule {
    fn get(&self, path: &str) -> Option<&str> {
        self.fields.get(path).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn name(&self) -> String {
        let name = self.get("alert").or_else(|| self.get("record")).unwrap_or("?");
        format!("{name} (line {})", self.line)
    }
}

/// The indentation of `line` and what follows it.
fn indented(line: &str) -> (usize, &str) {
    let content = line.trim_start_matches(' ');
    (line.len() - content.len(), content)
}

/// The rules of a rule file in the shape the module comment describes.
fn rules_of(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Vec::new();
    // The rule being read and the column of its keys; the open maps above the current key.
    let mut current: Option<(usize, Rule)> = None;
    let mut parents: Vec<(usize, String)> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let (mut column, mut content) = indented(lines[index]);
        index += 1;
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(item) = content.strip_prefix("- ").filter(|i| i.starts_with("alert:") || i.starts_with("record:")) {
            rules.extend(current.take().map(|(_, rule)| rule));
            parents.clear();
            current = Some((column + 2, Rule { line: number, fields: BTreeMap::new() }));
            (column, content) = (column + 2, item);
        }
        let Some((key_column, rule)) = current.as_mut() else { continue };
        if column < *key_column {
            rules.extend(current.take().map(|(_, rule)| rule));
            continue;
        }
        let (key, value) =
            content.split_once(':').unwrap_or_else(|| panic!("{ALERTS}:{number}: not `key: value`: {content}"));
        parents.retain(|(open, _)| *open < column);
        let path: Vec<&str> = parents.iter().map(|(_, k)| k.as_str()).chain([key.trim()]).collect();
        let path = path.join(".");
        let value = value.trim();
        let value = match value.chars().next() {
            None => {
                parents.push((column, key.trim().to_owned()));
                continue;
            }
            Some(style @ ('|' | '>')) => {
                // Lines deeper than the key, kept with their indentation beyond the first one's.
                let mut block = Vec::new();
                let mut margin = None;
                while let Some(next) = lines.get(index) {
                    let (depth, text) = indented(next);
                    if !text.is_empty() && depth <= column {
                        break;
                    }
                    if text.is_empty() {
                        block.push("");
                    } else {
                        let margin = *margin.get_or_insert(depth);
                        block.push(&next[margin.min(depth)..]);
                    }
                    index += 1;
                }
                block.join(if style == '|' { "\n" } else { " " }).trim().to_owned()
            }
            Some('{' | '[' | '&' | '*') => panic!("{ALERTS}:{number}: flow collections and anchors are not read"),
            Some(_) => value.trim_matches(|c| c == '"' || c == '\'').to_owned(),
        };
        rule.fields.insert(path, value);
    }
    rules.extend(current.map(|(_, rule)| rule));
    rules
}

fn alert_rules() -> Vec<Rule> {
    let text = read_example(ALERTS);
    let rules = rules_of(&text);
    let expr_lines = text.lines().filter(|l| indented(l).1.starts_with("expr:")).count();
    assert_eq!(rules.iter().filter(|r| r.get("expr").is_some()).count(), expr_lines, "every `expr:` is read");
    rules
}

#[test]
fn every_alert_has_an_expression_a_duration_a_severity_and_a_summary() {
    let rules = alert_rules();

    assert!(rules.len() >= 6, "{} rules", rules.len());
    for rule in &rules {
        let name = rule.name();
        assert!(rule.get("alert").is_some(), "{name}: only alerting rules here");
        assert!(rule.get("expr").is_some_and(|e| e.contains(PREFIX)), "{name}: an expr on our metrics");
        let duration = rule.get("for").unwrap_or_else(|| panic!("{name}: a `for`"));
        let (amount, unit) = duration.split_at(duration.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
        assert!(!amount.is_empty() && ["s", "m", "h", "d"].contains(&unit), "{name}: `for: {duration}`");
        let severity = rule.get("labels.severity").unwrap_or_else(|| panic!("{name}: labels.severity"));
        assert!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity}");
        assert!(rule.get("annotations.summary").is_some(), "{name}: annotations.summary");
        assert!(rule.get("annotations.description").is_some(), "{name}: annotations.description");
    }
    // What the alerts must watch, whatever they are called.
    let watched: BTreeSet<String> = rules.iter().flat_map(|r| metric_names(r.get("expr").unwrap())).collect();
    for metric in [
        "token_exchange_upstream_requests_total",
        "token_exchange_cache_lookups_total",
        "token_exchange_signing_key_active",
        "token_exchange_signing_key_age_seconds",
        "token_exchange_redis_errors_total",
        "token_exchange_forward_auth_decisions_total",
    ] {
        assert!(watched.contains(metric), "no alert watches {metric}");
    }
}

#[test]
fn the_rule_reader_follows_the_documented_shape() {
    let text = "groups:\n  - name: g\n    rules:\n      # a comment\n      - alert: One\n        expr: |\n          \
                sum(rate(token_exchange_a_total[5m]))\n\n            > 0\n        for: 5m\n        labels:\n          \
                severity: warning\n        annotations:\n          summary: \"s: {{ $value }}\"\n          \
                description: >\n            two\n            lines\n      - alert: Two\n        \
                expr: token_exchange_b == 0\n  - name: other\n";

    let rules = rules_of(text);

    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].get("expr"), Some("sum(rate(token_exchange_a_total[5m]))\n\n  > 0"));
    assert_eq!(rules[0].get("for"), Some("5m"));
    assert_eq!(rules[0].get("labels.severity"), Some("warning"));
    assert_eq!(rules[0].get("annotations.summary"), Some("s: {{ $value }}"));
    assert_eq!(rules[0].get("annotations.description"), Some("two lines"));
    assert_eq!((rules[1].get("alert"), rules[1].get("expr")), (Some("Two"), Some("token_exchange_b == 0")));
    assert_eq!(rules[1].get("for"), None);
}

// ------------------------------------------------------------------------------------------
// Names against a running service
// ------------------------------------------------------------------------------------------

/// The identifiers starting with `token_exchange_` in a PromQL expression, outside string
/// literals and comments.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    for c in expr.chars().chain([' ']) {
        if comment {
            comment = c != '\n';
            continue;
        }
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && open != '`' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with(PREFIX) {
            names.insert(word.clone());
        }
        word.clear();
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '#' => comment = true,
            _ => {}
        }
    }
    names
}

#[test]
fn metric_names_skip_strings_and_comments() {
    let expr = "sum by (le) (rate(token_exchange_x_bucket{a=\"token_exchange_no\", b=~'x\\'token_exchange_no'}[5m]))\n\
                # token_exchange_comment\n/ on() token_exchange_y:ratio offset 1h";
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(names, ["token_exchange_x_bucket", "token_exchange_y:ratio"]);
}

/// What the exposition of several apps holds: series names, and families by `# TYPE`.
#[derive(Default)]
struct Exported {
    series: BTreeSet<String>,
    families: BTreeMap<String, String>,
}

impl Exported {
    fn add(&mut self, metrics: &MetricsText) {
        for line in metrics.0.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declaration.split_once(' ').unwrap();
                self.families.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                self.series.insert(line.split(['{', ' ']).next().unwrap().to_owned());
            }
        }
    }

    /// The family a series name belongs to: a histogram's for its `_bucket`, `_sum`, `_count`.
    fn family_of<'a>(&self, name: &'a str) -> &'a str {
        ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| self.families.get(*base).is_some_and(|kind| kind == "histogram"))
            .unwrap_or(name)
    }
}

/// Drives three apps through every path that creates a series and returns what they export:
/// `first` (Redis, an opaque upstream, a forward-auth route), `second` (a replica on the same
/// Redis prefix, for an L2 hit) and `cut_off` (its Redis does not listen, for Redis errors).
async fn exported_by_a_busy_service() -> Exported {
    let idp = FakeIdp::start().await;
    let first = TestApp::builder(&idp)
        .with_redis()
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(with_orders_route)
        .spawn()
        .await;
    idp.introspection_active("dashboard-1", first.now() + 600).await;

    // L1 miss, L2 miss, introspection; then an L1 hit; then a refusal.
    assert_eq!(first.exchange_opaque("dashboard-1", &[]).await.status(), 200);
    assert_eq!(first.exchange_opaque("dashboard-1", &[]).await.status(), 200);
    assert_oauth_error(first.exchange_opaque("dashboard-1", &[("audience", "payroll")]).await, 400, "invalid_target")
        .await;
    // A forward-auth decision on a JWT (a JWKS fetch).
    let decision = first
        .http
        .get(first.url("/forward-auth"))
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Host", "api.example.com")
        .header("X-Forwarded-Uri", "/api/orders/42")
        .bearer_auth(idp.token(first.now()))
        .send()
        .await
        .unwrap();
    assert_eq!(decision.status(), 200);
    // Concurrent first exchanges of one new token while the provider takes its time: one asks,
    // the others wait for its answer.
    let slow = json!({"active": true, "sub": "burst", "exp": first.now() + 600});
    idp.introspection_answers(
        "dashboard-burst",
        ResponseTemplate::new(200).set_body_json(slow).set_delay(Duration::from_millis(300)),
    )
    .await;
    let burst = futures_util::future::join_all((0..10).map(|_| first.exchange_opaque("dashboard-burst", &[]))).await;
    assert!(burst.iter().all(|r| r.status() == 200));

    let second = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .with_redis_prefix(first.redis_prefix())
        .spawn()
        .await;
    assert_eq!(second.exchange_opaque("dashboard-1", &[]).await.status(), 200);

    let cut_off = TestApp::builder(&idp)
        .with_opaque_upstream(idp.introspection_upstream())
        .configure(|s| {
            s.cache.redis_url = Some("redis://127.0.0.1:1".into());
            s.cache.redis_timeout = Duration::from_millis(200);
        })
        .spawn()
        .await;
    assert_eq!(cut_off.exchange_opaque("dashboard-1", &[]).await.status(), 200);

    let (first, second, cut_off) = (first.metrics().await, second.metrics().await, cut_off.metrics().await);
    // The traffic did what it was meant to, so a missing name below is the files' fault.
    let lookups = "token_exchange_cache_lookups_total";
    for (tier, result) in [("l1", "miss"), ("l1", "hit"), ("l2", "miss")] {
        assert!(first.value(lookups, &[("tier", tier), ("result", result)]).is_some(), "{tier} {result}: {first}");
    }
    assert_eq!(second.value(lookups, &[("tier", "l2"), ("result", "hit")]), Some(1.0), "{second}");
    assert!(first.total("token_exchange_singleflight_waits_total") > 0.0, "a coalesced wait: {first}");
    let allowed = [("route", "orders"), ("outcome", "allowed")];
    assert!(first.value("token_exchange_forward_auth_decisions_total", &allowed).is_some(), "a decision: {first}");
    assert!(cut_off.total("token_exchange_redis_errors_total") > 0.0, "a Redis error: {cut_off}");

    let mut exported = Exported::default();
    for metrics in [&first, &second, &cut_off] {
        exported.add(metrics);
    }
    exported
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_name_is_exported_and_the_dashboard_shows_them_all() {
    let dashboard = dashboard();
    let mut queries: Vec<(String, String)> =
        dashboard_queries(&dashboard).into_iter().map(|(place, expr)| (format!("{DASHBOARD} {place}"), expr)).collect();
    let dashboard_query_count = queries.len();
    queries.extend(
        alert_rules().iter().map(|rule| (format!("{ALERTS} {}", rule.name()), rule.get("expr").unwrap().into())),
    );

    let exported = exported_by_a_busy_service().await;

    let mut missing = Vec::new();
    let mut shown = BTreeSet::new();
    for (index, (place, expr)) in queries.iter().enumerate() {
        for name in metric_names(expr) {
            if !exported.series.contains(&name) {
                missing.push(format!("{place}: {name}"));
            } else if index < dashboard_query_count {
                shown.insert(exported.family_of(&name).to_owned());
            }
        }
    }
    assert!(missing.is_empty(), "not in /metrics:\n{}\nexported: {:?}", missing.join("\n"), exported.series);
    let ours: BTreeSet<&String> = exported.families.keys().filter(|f| f.starts_with(PREFIX)).collect();
    assert!(ours.len() >= 11, "{ours:?}");
    let unshown: Vec<_> = ours.into_iter().filter(|family| !shown.contains(*family)).collect();
    assert!(unshown.is_empty(), "exported but on no panel of {DASHBOARD}: {unshown:?}");
}

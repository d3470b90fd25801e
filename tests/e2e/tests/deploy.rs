//! What operators deploy, checked as far as this machine allows (no Kubernetes, no Docker engine):
//! the OCI image layout of `make oci`, the Istio manifests in deploy/istio/ and the docker compose
//! stack in envoy/. The filter configurations they carry run in the real Envoy 1.40 with the
//! release module; the rest is read and checked field by field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_guard_e2e::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The cluster name Istio gives the guardctl Service of deploy/istio/guardctl.yaml.
const GUARDCTL_ISTIO_CLUSTER: &str = "outbound|8081||guardctl.mcp-guard.svc.cluster.local";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The module path as the shipped Envoy configs write it (relative to the repository root).
const MODULE_PATH: &str = "target/wasm32-wasip1/release/mcp_guard.wasm";
/// `make run`'s ports: Envoy, Envoy admin, guardctl, demo MCP server.
const STACK_PORTS: [u16; 4] = [10000, 9901, 8081, 8000];

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Every YAML document of a file, as JSON values (empty documents dropped).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The strings of a YAML list.
fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item.as_str().unwrap())
        .collect()
}

fn istio_dir() -> PathBuf {
    repo_root().join("deploy/istio")
}

fn docs_of_kind(path: &Path, kind: &str) -> Vec<Value> {
    yaml_docs(path)
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect()
}

fn the_doc(path: &Path, kind: &str) -> Value {
    let mut docs = docs_of_kind(path, kind);
    assert_eq!(docs.len(), 1, "one {kind} in {}", path.display());
    docs.remove(0)
}

/// The `patch.value` of the EnvoyFilter's only patch applied to `apply_to`.
fn patch<'a>(filter: &'a Value, apply_to: &str) -> &'a Value {
    let patches: Vec<&Value> = filter["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["applyTo"] == apply_to)
        .collect();
    assert_eq!(
        patches.len(),
        1,
        "one {apply_to} patch in {}",
        filter["metadata"]["name"]
    );
    patches[0]
}

fn envoy_filters() -> Vec<Value> {
    let filters = docs_of_kind(&istio_dir().join("envoyfilter.yaml"), "EnvoyFilter");
    assert_eq!(filters.len(), 2, "an audit and an enforce EnvoyFilter");
    filters
}

/// The plugin JSON (the filter's `configuration` string) of an EnvoyFilter.
fn plugin_json(filter: &Value) -> String {
    let config = &patch(filter, "EXTENSION_CONFIG")["patch"]["value"]["typed_config"]["config"];
    assert_eq!(
        config["configuration"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    config["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

fn envoy_filter_named(name: &str) -> Value {
    envoy_filters()
        .into_iter()
        .find(|f| f["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no EnvoyFilter {name}"))
}

/// The shipped envoy/envoy.yaml rendered for the harness, with its `guardctl` cluster renamed to
/// Istio's name for the guardctl Service, so a plugin config from the manifests finds its cluster.
fn envoy_yaml_with_istio_cluster(options: &EnvoyOptions) -> String {
    let text = Envoy::render(options, 0, 0);
    let rename = |text: String, from: &str, to: &str| {
        assert_eq!(text.matches(from).count(), 1, "{from:?} once in envoy.yaml");
        text.replacen(from, to, 1)
    };
    let text = rename(
        text,
        "  - name: guardctl\n",
        &format!("  - name: \"{GUARDCTL_ISTIO_CLUSTER}\"\n"),
    );
    rename(
        text,
        "cluster_name: guardctl\n",
        &format!("cluster_name: \"{GUARDCTL_ISTIO_CLUSTER}\"\n"),
    )
}

// ---------------------------------------------------------------------------------------------
// OCI image layout.

/// Runs tools/oci.py on the release module into `out`; returns the manifest digest it printed.
fn make_oci(out: &Path) -> String {
    let run = Command::new("python3")
        .arg(repo_root().join("tools/oci.py"))
        .arg("--wasm")
        .arg(release_wasm())
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "tools/oci.py failed: {}{printed}",
        String::from_utf8_lossy(&run.stderr)
    );
    printed
        .lines()
        .find_map(|l| l.strip_prefix("manifest digest: "))
        .unwrap_or_else(|| panic!("no digest printed: {printed}"))
        .trim()
        .to_string()
}

fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Reads a blob through its descriptor, checking that it exists with that size and digest.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let data = fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest} missing: {e}"));
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(data.len() as u64),
        "size of {digest}"
    );
    assert_eq!(sha256_hex(&data), hex, "content of blob {digest}");
    data
}

/// Checks the layout's structure; returns the manifest digest and the module in its layer.
fn check_layout(layout: &Path) -> (String, Vec<u8>) {
    let oci_layout: Value =
        serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image in the layout");
    let entry = &manifests[0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(
        entry["annotations"]["org.opencontainers.image.ref.name"].is_string(),
        "a tag"
    );

    let manifest: Value = serde_json::from_slice(&blob(layout, entry)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The compat variant of the Wasm image spec, as istio's pkg/wasm reads it.
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "exactly one layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let gz = blob(layout, &layers[0]);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&tar_bytes))]),
        "the config's diff_id is the uncompressed layer"
    );
    assert!(
        config.get("created").is_none(),
        "no build time in the config"
    );

    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().to_string();
        assert_eq!(entry.header().mtime().unwrap(), 0, "fixed mtime");
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.push((path, data));
    }
    assert_eq!(entries.len(), 1, "the layer holds plugin.wasm only");
    assert_eq!(entries[0].0, "plugin.wasm");

    let mut blobs: BTreeSet<String> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for descriptor in [entry, &manifest["config"], &layers[0]] {
        blobs.remove(
            descriptor["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        );
    }
    assert!(blobs.is_empty(), "blobs nothing refers to: {blobs:?}");

    let digest = entry["digest"].as_str().unwrap().to_string();
    (digest, entries.remove(0).1)
}

#[test]
fn oci_layout_is_reproducible_well_formed_and_holds_the_module_byte_for_byte() {
    let dir = scratch_dir("oci");
    let first = make_oci(&dir.join("first"));
    let second = make_oci(&dir.join("second"));
    assert_eq!(first, second, "same module, same digest");
    assert_eq!(
        files_under(&dir.join("first")),
        files_under(&dir.join("second")),
        "same module, same layout byte for byte"
    );
    let (digest, module) = check_layout(&dir.join("first"));
    assert_eq!(digest, first, "the printed digest is the manifest's");
    assert!(
        module == fs::read(release_wasm()).unwrap(),
        "plugin.wasm is the release module"
    );
}

// ---------------------------------------------------------------------------------------------
// Istio.

#[test]
fn every_shipped_manifest_parses() {
    let mut files = yaml_files(&istio_dir());
    let istio_count = files.len();
    files.extend(yaml_files(&repo_root().join("envoy")));
    assert!(
        istio_count >= 5,
        "deploy/istio holds {istio_count} YAML files"
    );
    for file in &files {
        let docs = yaml_docs(file);
        assert!(!docs.is_empty(), "{} is empty", file.display());
        for doc in &docs {
            assert!(
                doc.is_object(),
                "{}: a document is not a mapping",
                file.display()
            );
        }
    }
    for file in &files[..istio_count] {
        for doc in yaml_docs(file) {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{}",
                file.display()
            );
            if doc["kind"] != "Kustomization" {
                assert!(
                    doc["metadata"]["name"].is_string(),
                    "{}: unnamed {}",
                    file.display(),
                    doc["kind"]
                );
            }
        }
    }
    let kustomization = the_doc(&istio_dir().join("kustomization.yaml"), "Kustomization");
    let resources: Vec<&str> = strings(&kustomization["resources"]);
    assert_eq!(
        resources,
        [
            "guardctl.yaml",
            "guardctl-sqlite.yaml",
            "authorization-policy.yaml",
            "envoyfilter.yaml"
        ]
    );
    for resource in resources {
        assert!(istio_dir().join(resource).is_file(), "{resource}");
    }
}

#[test]
fn only_the_sync_api_is_open_to_the_mesh() {
    let policy = the_doc(
        &istio_dir().join("authorization-policy.yaml"),
        "AuthorizationPolicy",
    );
    assert_eq!(policy["metadata"]["namespace"], "mcp-guard");
    assert_eq!(policy["spec"]["action"], "ALLOW");
    // The same pods as guardctl's Deployment.
    let guardctl = std::fs::read_to_string(istio_dir().join("guardctl.yaml")).unwrap();
    let app = policy["spec"]["selector"]["matchLabels"]["app"]
        .as_str()
        .unwrap();
    assert!(guardctl.contains(&format!("app: {app}")), "{app}");
    let rules = policy["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    let operation = &rules[0]["to"][0]["operation"];
    assert_eq!(operation["paths"], serde_json::json!(["/v1/keyset"]));
    assert_eq!(operation["methods"], serde_json::json!(["GET"]));
    assert!(rules[0]["from"][0]["source"]["namespaces"].is_array());
}

#[test]
fn envoy_filters_are_fail_closed_hold_headers_pin_the_module_and_select_by_label() {
    let filters = envoy_filters();
    for filter in &filters {
        let name = filter["metadata"]["name"].as_str().unwrap();
        assert_eq!(filter["apiVersion"], "networking.istio.io/v1alpha3");
        let mode = name.strip_prefix("mcp-guard-").unwrap();
        assert_eq!(
            filter["spec"]["workloadSelector"]["labels"],
            serde_json::json!({ "mcp-guard": mode }),
            "{name}: canary by workload label"
        );

        let ext = &patch(filter, "EXTENSION_CONFIG")["patch"];
        assert_eq!(ext["operation"], "ADD");
        assert_eq!(ext["value"]["name"], name);
        let typed = &ext["value"]["typed_config"];
        assert_eq!(typed["@type"], WASM_TYPE);
        let config = &typed["config"];
        assert_eq!(
            config["failure_policy"], "FAIL_CLOSED",
            "{name}: fail closed"
        );
        assert!(config.get("fail_open").is_none());
        assert_eq!(
            config["allow_on_headers_stop_iteration"], true,
            "{name}: headers held"
        );
        assert_eq!(config["root_id"], "mcp-guard");
        assert_eq!(config["vm_config"]["vm_id"], "mcp-guard");
        assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
        let remote = &config["vm_config"]["code"]["remote"];
        assert_eq!(
            remote["http_uri"]["uri"],
            "oci://${MCP_GUARD_REGISTRY}/mcp-guard@sha256:${MCP_GUARD_DIGEST}",
            "{name}: module pinned by digest"
        );
        assert_eq!(remote["sha256"], "${MCP_GUARD_DIGEST}");

        let json: Value = serde_json::from_str(&plugin_json(filter)).unwrap();
        assert_eq!(json["mode"], mode);
        assert_eq!(json["keyset_cluster"], GUARDCTL_ISTIO_CLUSTER);
        let max_body = json["max_body_bytes"].as_u64().unwrap();
        assert!(
            max_body < 1 << 20,
            "below Istio's 1 MiB listener buffer limit"
        );

        let http = &patch(filter, "HTTP_FILTER");
        assert_eq!(http["match"]["context"], "SIDECAR_INBOUND");
        assert_eq!(
            http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router"
        );
        assert_eq!(http["patch"]["operation"], "INSERT_BEFORE");
        let discovery = &http["patch"]["value"]["config_discovery"];
        assert_eq!(
            http["patch"]["value"]["name"], name,
            "refers to the extension config"
        );
        assert_eq!(discovery["config_source"]["initial_fetch_timeout"], "0s");
        assert!(discovery["config_source"]["ads"].is_object());
        assert_eq!(discovery["type_urls"], serde_json::json!([WASM_TYPE]));

        let hcm = &patch(filter, "NETWORK_FILTER");
        assert_eq!(hcm["match"]["context"], "SIDECAR_INBOUND");
        assert_eq!(
            hcm["match"]["listener"]["filterChain"]["filter"]["name"],
            "envoy.filters.network.http_connection_manager"
        );
        assert_eq!(hcm["patch"]["operation"], "MERGE");
        assert_eq!(
            hcm["patch"]["value"]["typed_config"]["common_http_protocol_options"]
                ["headers_with_underscores_action"],
            "REJECT_REQUEST",
            "{name}: underscore header names refused"
        );
    }
    // The two differ only in the body-policy mode.
    let audit: Value =
        serde_json::from_str(&plugin_json(&envoy_filter_named("mcp-guard-audit"))).unwrap();
    let mut enforce: Value =
        serde_json::from_str(&plugin_json(&envoy_filter_named("mcp-guard-enforce"))).unwrap();
    enforce["mode"] = "audit".into();
    assert_eq!(audit, enforce);
}

/// The EnvoyFilter's extension config as Envoy receives it from istio-agent (module fetched,
/// `remote` rewritten to a local file), in a minimal bootstrap: listener, HCM, filter, router.
fn bootstrap_with_filter(name: &str, typed_config: &Value, hcm_patch: &Value) -> String {
    let cluster = |name: &str, port: u16| {
        serde_json::json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
            ]}]}
        })
    };
    let bootstrap = serde_json::json!({
        "static_resources": {
            "listeners": [{
                "name": "virtualInbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound",
                        "common_http_protocol_options": hcm_patch["typed_config"]["common_http_protocol_options"],
                        "route_config": {"name": "inbound", "virtual_hosts": [{
                            "name": "inbound", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|8000||"}}]
                        }]},
                        "http_filters": [
                            {"name": name, "typed_config": typed_config},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]}]
            }],
            "clusters": [cluster(GUARDCTL_ISTIO_CLUSTER, 8081), cluster("inbound|8000||", 8000)]
        }
    });
    serde_json::to_string_pretty(&bootstrap).unwrap()
}

fn fetched_by_istio_agent(typed_config: &Value) -> Value {
    let mut local = typed_config.clone();
    let code = &mut local["config"]["vm_config"]["code"];
    assert!(
        code["remote"].is_object(),
        "the module comes from the registry"
    );
    *code = serde_json::json!({"local": {"filename": release_wasm()}});
    local
}

#[test]
fn envoy_filter_extension_configs_validate_in_envoy_1_40() {
    let dir = scratch_dir("istio-validate");
    for filter in envoy_filters() {
        let value = &patch(&filter, "EXTENSION_CONFIG")["patch"]["value"];
        let name = value["name"].as_str().unwrap();
        let typed = fetched_by_istio_agent(&value["typed_config"]);
        let hcm = &patch(&filter, "NETWORK_FILTER")["patch"]["value"];
        let (ok, printed) = validate_yaml(&dir, name, &bootstrap_with_filter(name, &typed, hcm));
        assert!(ok, "envoy --mode validate refused {name}:\n{printed}");

        // Control: validate mode does run the filter's on_configure, so a plugin config the
        // filter refuses fails validation (and the pass above means the filter accepted it).
        let mut bad = typed.clone();
        let mut json: Value = serde_json::from_str(&plugin_json(&filter)).unwrap();
        json["no_such_field"] = true.into();
        bad["config"]["configuration"]["value"] = json.to_string().into();
        let (ok, printed) = validate_yaml(
            &dir,
            &format!("{name}-bad"),
            &bootstrap_with_filter(name, &bad, hcm),
        );
        assert!(!ok, "a bad plugin config must fail validation:\n{printed}");
    }
}

#[test]
fn istio_plugin_configs_run_in_the_real_filter_audit_forwards_and_enforce_blocks() {
    let dir = scratch_dir("istio-config");
    let guardctl = Guardctl::start(&dir);
    let upstream = Upstream::start(&dir);
    let tools_call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","api_key":"sk-not-real"}}}"#;
    for name in ["mcp-guard-audit", "mcp-guard-enforce"] {
        let json = plugin_json(&envoy_filter_named(name));
        let org = serde_json::from_str::<Value>(&json).unwrap()["org"]
            .as_str()
            .unwrap()
            .to_string();
        let mut options = EnvoyOptions::new(upstream.port, guardctl.port);
        options.plugin_config = Some(json);
        let envoy = Envoy::start_config(
            &dir,
            &envoy_yaml_with_istio_cluster(&options),
            2,
            None,
            "debug",
        );
        envoy.wait_for_keyset();
        let key = guardctl.create_key(&org, "member", None);
        wait_until_allowed_on(envoy.port, &key.token);

        assert_eq!(
            Request::post_json("/api/mcp", INITIALIZE)
                .send(envoy.port)
                .status,
            401
        );
        let answer = Request::post_json("/api/mcp", INITIALIZE)
            .bearer(&key.token)
            .send(envoy.port);
        assert_eq!(answer.status, 200, "{name}: {answer:?}");
        assert_eq!(
            mcp_message(&answer)["result"]["serverInfo"]["name"],
            "mcp-demo-server"
        );

        let before = upstream.request_count();
        let answer = Request::post_json("/api/mcp", tools_call)
            .bearer(&key.token)
            .send(envoy.port);
        if name.ends_with("audit") {
            assert!(
                !answer.body.contains("\"rule\""),
                "audit forwards: {answer:?}"
            );
            assert_eq!(upstream.request_count(), before + 1);
            assert_eq!(envoy.stat("mcp_guard.body.audit.api_key"), 1);
        } else {
            assert_eq!(answer.status, 400, "{answer:?}");
            assert_eq!(answer.json()["error"]["data"]["rule"], "api_key");
            assert_eq!(
                upstream.request_count(),
                before,
                "nothing reached the upstream"
            );
            assert_eq!(envoy.stat("mcp_guard.body.rejected.api_key"), 1);
        }
        // The sync went through the cluster named like Istio's.
        assert!(envoy.stat("mcp_guard.sync.succeeded") >= 1);
    }
}

#[test]
fn wasm_plugin_alternative_is_fail_closed_auth_only_and_its_config_is_accepted() {
    let path = istio_dir().join("alternatives/wasmplugin-auth-only.yaml");
    let plugin = the_doc(&path, "WasmPlugin");
    let spec = &plugin["spec"];
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(
        spec["url"],
        "oci://${MCP_GUARD_REGISTRY}/mcp-guard@sha256:${MCP_GUARD_DIGEST}"
    );
    assert_eq!(spec["sha256"], "${MCP_GUARD_DIGEST}");
    assert_eq!(spec["pluginName"], "mcp-guard");
    assert_eq!(spec["selector"]["matchLabels"]["mcp-guard"], "auth-only");
    // Without allow_on_headers_stop_iteration, body inspection is off.
    assert_eq!(
        spec["pluginConfig"]["inspect_path_prefixes"],
        serde_json::json!([])
    );
    assert_eq!(
        spec["pluginConfig"]["keyset_cluster"],
        GUARDCTL_ISTIO_CLUSTER
    );

    // Istio passes pluginConfig to the filter as JSON: the filter must accept it.
    let dir = scratch_dir("wasmplugin");
    let mut options = EnvoyOptions::new(8000, 8081);
    options.plugin_config = Some(serde_json::to_string_pretty(&spec["pluginConfig"]).unwrap());
    let (ok, printed) = validate_yaml(&dir, "wasmplugin", &envoy_yaml_with_istio_cluster(&options));
    assert!(ok, "{printed}");

    let entry = the_doc(
        &istio_dir().join("alternatives/serviceentry-external-guardctl.yaml"),
        "ServiceEntry",
    );
    assert_eq!(entry["spec"]["ports"][0]["number"], 8081);
    assert_eq!(entry["spec"]["ports"][0]["protocol"], "HTTP");
}

#[test]
fn guardctl_runs_as_one_non_root_replica_with_probes_storage_and_its_admin_token() {
    let common = istio_dir().join("guardctl.yaml");
    let path = istio_dir().join("guardctl-sqlite.yaml");
    let namespace = the_doc(&common, "Namespace");
    assert_eq!(namespace["metadata"]["name"], "mcp-guard");
    for file in [
        "guardctl.yaml",
        "guardctl-sqlite.yaml",
        "guardctl-postgres.yaml",
    ] {
        for doc in yaml_docs(&istio_dir().join(file))
            .iter()
            .filter(|d| d["kind"] != "Namespace")
        {
            assert_eq!(
                doc["metadata"]["namespace"], "mcp-guard",
                "{file}: {}",
                doc["kind"]
            );
        }
    }
    let deployment = the_doc(&path, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "one SQLite writer");
    assert_eq!(
        spec["strategy"]["type"], "Recreate",
        "never two pods on the volume"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        spec["selector"]["matchLabels"],
        spec["template"]["metadata"]["labels"]
    );
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert!(security["runAsUser"].as_u64().unwrap() > 0);
    assert!(security["fsGroup"].as_u64().unwrap() > 0);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    let containers: Vec<&Value> = pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["containers"].as_array().unwrap())
        .collect();
    for container in &containers {
        let c = &container["securityContext"];
        assert_eq!(
            c["allowPrivilegeEscalation"], false,
            "{}",
            container["name"]
        );
        assert_eq!(c["readOnlyRootFilesystem"], true, "{}", container["name"]);
        assert_eq!(c["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
    }
    let guardctl = &pod["containers"][0];
    let args: Vec<&str> = strings(&guardctl["args"]);
    assert_eq!(args[0], "serve");
    let db = args[args.iter().position(|a| *a == "--db").unwrap() + 1];
    let listen = args[args.iter().position(|a| *a == "--listen").unwrap() + 1];
    assert_eq!(listen, "0.0.0.0:8081");
    let data_dir = Path::new(db).parent().unwrap().to_str().unwrap();
    let mount_of = |container: &Value, volume: &str| {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .map(|m| m["mountPath"].as_str().unwrap().to_string())
    };
    assert_eq!(
        mount_of(guardctl, "data").as_deref(),
        Some(data_dir),
        "database on the volume"
    );
    // Ready: the database answers and the server is not stopping; alive: it serves HTTP.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(guardctl[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(guardctl[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert_eq!(guardctl["ports"][0]["containerPort"], 8081);
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(annotations["prometheus.io/port"], "8081");

    // The admin token: `serve --admin-token-file` reads it straight from the mounted Secret.
    let token_file = args[args
        .iter()
        .position(|a| *a == "--admin-token-file")
        .unwrap()
        + 1];
    let token_dir = mount_of(guardctl, "admin-token").unwrap();
    assert_eq!(token_file, format!("{token_dir}/admin-token"));
    let token_mount = guardctl["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "admin-token")
        .unwrap();
    assert_eq!(token_mount["readOnly"], true);
    let log_format = guardctl["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GUARDCTL_LOG_FORMAT")
        .unwrap();
    assert_eq!(log_format["value"], "json");
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    // The Secret is its own file, outside kustomization.yaml, so applying the folder never
    // resets a token the operator created.
    let secret = the_doc(&istio_dir().join("admin-token-secret.yaml"), "Secret");
    assert!(docs_of_kind(&path, "Secret").is_empty());
    assert_eq!(secret["metadata"]["namespace"], "mcp-guard");
    assert_eq!(
        volume("admin-token")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert!(secret["stringData"]["admin-token"].is_string());
    let pvc = the_doc(&path, "PersistentVolumeClaim");
    assert_eq!(
        volume("data")["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    assert_eq!(
        pvc["spec"]["accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );

    // The Service whose Istio cluster name the filters use as keyset_cluster.
    let service = the_doc(&common, "Service");
    assert_eq!(
        service["spec"]["selector"],
        spec["template"]["metadata"]["labels"]
    );
    let port = &service["spec"]["ports"][0];
    assert!(
        port["name"].as_str().unwrap().starts_with("http"),
        "Istio protocol by port name"
    );
    assert_eq!(
        format!(
            "outbound|{}||{}.{}.svc.cluster.local",
            port["port"],
            service["metadata"]["name"].as_str().unwrap(),
            service["metadata"]["namespace"].as_str().unwrap()
        ),
        GUARDCTL_ISTIO_CLUSTER
    );
}

#[test]
fn rendered_manifests_pin_the_digest_of_make_oci() {
    let dir = scratch_dir("istio-render");
    let digest = make_oci(&dir.join("oci"));
    let hex = digest.strip_prefix("sha256:").unwrap();
    let out = dir.join("istio");
    let run = Command::new(repo_root().join("tools/render-istio.sh"))
        .args(["registry.example.com/platform", &digest])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in yaml_files(&out) {
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("${"),
            "placeholder left in {}",
            file.display()
        );
    }
    let filter = &docs_of_kind(&out.join("envoyfilter.yaml"), "EnvoyFilter")[0];
    let remote = &patch(filter, "EXTENSION_CONFIG")["patch"]["value"]["typed_config"]["config"]
        ["vm_config"]["code"]["remote"];
    assert_eq!(
        remote["http_uri"]["uri"],
        format!("oci://registry.example.com/platform/mcp-guard@{digest}")
    );
    assert_eq!(remote["sha256"], hex);
    // A digest that is not one is refused.
    let run = Command::new(repo_root().join("tools/render-istio.sh"))
        .args(["registry.example.com/platform", "latest"])
        .arg(dir.join("bad"))
        .output()
        .unwrap();
    assert!(!run.status.success());
}

// ---------------------------------------------------------------------------------------------
// docker compose.

/// The `http_filters:` block of an Envoy config (up to the clusters).
fn filter_block(text: &str) -> &str {
    let start = text
        .find("          http_filters:\n")
        .expect("http_filters");
    let end = text.find("\n  clusters:\n").expect("clusters");
    &text[start..end]
}

#[test]
fn compose_envoy_config_validates_and_keeps_the_shipped_filter_block() {
    let shipped = fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    let compose = fs::read_to_string(repo_root().join("envoy/envoy.compose.yaml")).unwrap();
    assert_eq!(
        filter_block(&compose),
        filter_block(&shipped),
        "keep envoy.compose.yaml in step with envoy.yaml"
    );
    for port in STACK_PORTS {
        assert_eq!(
            compose.matches(&format!("port_value: {port} ")).count(),
            1,
            "port {port}"
        );
    }
    assert!(compose.contains("socket_address: { address: 0.0.0.0, port_value: 10000 }"));
    assert!(compose.contains("socket_address: { address: 0.0.0.0, port_value: 9901 }"));
    assert!(compose.contains("{ address: guardctl, port_value: 8081 }"));
    assert!(compose.contains("{ address: mcp-demo-server, port_value: 8000 }"));
    assert!(
        !compose.contains("127.0.0.1"),
        "nothing in a container listens or dials on loopback"
    );

    // Validate mode does not resolve the service names, so it runs here without compose's DNS.
    let dir = scratch_dir("compose-validate");
    assert_eq!(compose.matches(MODULE_PATH).count(), 1);
    let yaml = compose.replace(MODULE_PATH, release_wasm().to_str().unwrap());
    let (ok, printed) = validate_yaml(&dir, "envoy-compose", &yaml);
    assert!(
        ok,
        "envoy --mode validate refused envoy.compose.yaml:\n{printed}"
    );
}

/// `FROM ... AS <stage>` stages of a Dockerfile, with the last USER of each.
fn dockerfile_stages(text: &str) -> BTreeMap<String, Option<String>> {
    let mut stages = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().map(|w| w.to_ascii_uppercase()) {
            Some(w) if w == "FROM" => {
                let name = words
                    .iter()
                    .position(|w| w.eq_ignore_ascii_case("as"))
                    .map(|i| words[i + 1].to_string())
                    .expect("named stage");
                stages.insert(name.clone(), None);
                current = Some(name);
            }
            Some(w) if w == "USER" => {
                stages.insert(current.clone().unwrap(), Some(words[1].to_string()));
            }
            _ => {}
        }
    }
    stages
}

#[test]
fn compose_file_references_only_files_that_exist() {
    let envoy_dir = repo_root().join("envoy");
    let compose = the_compose();
    let services = compose["services"].as_object().unwrap();
    assert_eq!(
        services.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["envoy", "guardctl", "mcp-demo-server"])
    );
    let declared_volumes: BTreeSet<&String> =
        compose["volumes"].as_object().unwrap().keys().collect();
    let mut published = BTreeSet::new();
    for (name, service) in services {
        if let Some(build) = service.get("build") {
            let context = envoy_dir.join(build["context"].as_str().unwrap());
            assert!(
                context.is_dir(),
                "{name}: build context {}",
                context.display()
            );
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
            let text = fs::read_to_string(&dockerfile)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", dockerfile.display()));
            let stages = dockerfile_stages(&text);
            let target = build["target"].as_str().unwrap();
            let user = stages
                .get(target)
                .unwrap_or_else(|| panic!("{name}: no stage {target}"));
            let user = user
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: stage {target} runs as root"));
            assert!(
                !user.starts_with("0") && !user.starts_with("root"),
                "{name}: USER {user}"
            );
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            match volume.as_str() {
                Some(short) => {
                    let source = short.split(':').next().unwrap();
                    assert!(
                        declared_volumes.contains(&source.to_string()),
                        "{name}: named volume {source}"
                    );
                }
                None => {
                    assert_eq!(volume["type"], "bind");
                    assert_eq!(volume["read_only"], true, "{name}: mounts are read-only");
                    let source = envoy_dir.join(volume["source"].as_str().unwrap());
                    assert!(
                        source.is_file(),
                        "{name}: bind source {} missing",
                        source.display()
                    );
                }
            }
        }
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port.as_str().unwrap();
            let parts: Vec<&str> = port.split(':').collect();
            assert_eq!(parts.len(), 3, "{name}: {port} names the host address");
            assert_eq!(parts[0], "127.0.0.1", "{name}: published on loopback only");
            assert_eq!(parts[1], parts[2], "{name}: same port as `make run`");
            published.insert(parts[1].parse::<u16>().unwrap());
        }
    }
    assert_eq!(
        published,
        BTreeSet::from(STACK_PORTS),
        "the ports of `make run`"
    );

    // Envoy: the official 1.40 image, the compose config and the module where the config expects it.
    let envoy = &services["envoy"];
    assert!(envoy["image"]
        .as_str()
        .unwrap()
        .starts_with("envoyproxy/envoy:v1.40"));
    let mounts: BTreeMap<&str, &str> = envoy["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["target"].as_str().unwrap(), v["source"].as_str().unwrap()))
        .collect();
    let working_dir = envoy["working_dir"].as_str().unwrap();
    assert_eq!(
        mounts.get(format!("{working_dir}/{MODULE_PATH}").as_str()),
        Some(&format!("../{MODULE_PATH}").as_str())
    );
    let command: Vec<&str> = strings(&envoy["command"]);
    let config = command[command.iter().position(|c| *c == "-c").unwrap() + 1];
    assert_eq!(mounts.get(config), Some(&"./envoy.compose.yaml"));
}

fn the_compose() -> Value {
    let docs = yaml_docs(&repo_root().join("envoy/docker-compose.yaml"));
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap()
}

/// The PostgreSQL option: several replicas that never all go at once, the database URL from a
/// Secret, no volume, and otherwise the very pod of the SQLite option (same image, security,
/// probes, ports, metrics and admin token), so the two cannot drift apart.
#[test]
fn guardctl_on_postgres_runs_replicas_with_a_disruption_budget_and_the_same_pod() {
    let path = istio_dir().join("guardctl-postgres.yaml");
    let ha = the_doc(&path, "Deployment");
    let single = the_doc(&istio_dir().join("guardctl-sqlite.yaml"), "Deployment");
    assert_eq!(ha["metadata"]["name"], single["metadata"]["name"]);
    let spec = &ha["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(spec["selector"], single["spec"]["selector"]);
    assert_eq!(
        spec["template"]["metadata"],
        single["spec"]["template"]["metadata"]
    );
    let (pod, single_pod) = (
        &spec["template"]["spec"],
        &single["spec"]["template"]["spec"],
    );
    for field in [
        "serviceAccountName",
        "securityContext",
        "terminationGracePeriodSeconds",
    ] {
        assert_eq!(pod[field], single_pod[field], "{field}");
    }
    let (guardctl, single_guardctl) = (&pod["containers"][0], &single_pod["containers"][0]);
    for field in [
        "name",
        "image",
        "ports",
        "readinessProbe",
        "livenessProbe",
        "resources",
        "securityContext",
    ] {
        assert_eq!(guardctl[field], single_guardctl[field], "{field}");
    }
    let args: Vec<&str> = strings(&guardctl["args"]);
    assert!(!args.contains(&"--db"), "the URL comes from GUARDCTL_DB");
    let single_args: Vec<&str> = strings(&single_guardctl["args"]);
    let without_db: Vec<&str> = single_args
        .iter()
        .enumerate()
        .filter(|(i, a)| **a != "--db" && (*i == 0 || single_args[i - 1] != "--db"))
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(args, without_db);
    let env = guardctl["env"].as_array().unwrap();
    let db = env.iter().find(|e| e["name"] == "GUARDCTL_DB").unwrap();
    assert!(
        db["value"].is_null(),
        "a database URL holds a password: only from a Secret"
    );
    assert!(db["valueFrom"]["secretKeyRef"]["name"].is_string());
    assert!(db["valueFrom"]["secretKeyRef"]["key"].is_string());
    let single_env = single_guardctl["env"].as_array().unwrap();
    assert_eq!(
        env.iter()
            .filter(|e| e["name"] != "GUARDCTL_DB")
            .collect::<Vec<_>>(),
        single_env.iter().collect::<Vec<_>>()
    );
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(
        volumes.iter().all(|v| v["persistentVolumeClaim"].is_null()),
        "no volume to share"
    );
    let token = |pod: &Value| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "admin-token")
            .cloned()
            .unwrap()
    };
    assert_eq!(token(pod), token(single_pod));
    assert!(docs_of_kind(&path, "PersistentVolumeClaim").is_empty());
    assert!(
        docs_of_kind(&path, "Secret").is_empty(),
        "the URL Secret is the operator's"
    );

    let budget = the_doc(&path, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["selector"], spec["selector"]);
    let max_unavailable = budget["spec"]["maxUnavailable"].as_u64().unwrap();
    assert!(max_unavailable < spec["replicas"].as_u64().unwrap());
    let rule = the_doc(&path, "DestinationRule");
    let service = the_doc(&istio_dir().join("guardctl.yaml"), "Service");
    assert_eq!(
        rule["spec"]["host"].as_str().unwrap(),
        format!(
            "{}.{}.svc.cluster.local",
            service["metadata"]["name"].as_str().unwrap(),
            service["metadata"]["namespace"].as_str().unwrap()
        )
    );
    assert!(
        rule["spec"]["trafficPolicy"]["tls"].is_null(),
        "Istio's automatic mTLS stays on"
    );
}

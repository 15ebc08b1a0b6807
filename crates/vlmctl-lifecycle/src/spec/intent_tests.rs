//! `[model]` intent tests.

use std::path::Path;

use super::*;

const BASE: &str = r#"
name = "panda-llamacpp"
image = "ghcr.io/ggml-org/llama.cpp:server-cuda"
gpus = "all"

[model]
name = "gemma-4-e2b-it-q4km"
repo = "unsloth/gemma-4-E2B-it-GGUF"
files = ["gemma-4-E2B-it-Q4_K_M.gguf", "mmproj-F16.gguf"]

[server]
host = "127.0.0.1"
port = 11435
"#;

fn parse(text: &str) -> Result<Spec, String> {
    Spec::parse(text, Path::new("docker/x.toml")).map_err(|e| e.to_string())
}

#[test]
fn a_model_table_is_intent_with_roles_inferred_and_main_by_default() {
    let spec = parse(BASE).unwrap();
    assert_eq!(spec.model, "gemma-4-e2b-it-q4km");
    let intent = spec.model_intent.unwrap();
    assert_eq!(intent.repo, "unsloth/gemma-4-E2B-it-GGUF");
    assert_eq!(intent.revision, "main");
    assert_eq!(
        intent
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.role))
            .collect::<Vec<_>>(),
        [
            ("gemma-4-E2B-it-Q4_K_M.gguf", FileRole::Model),
            ("mmproj-F16.gguf", FileRole::Mmproj)
        ]
    );
}

#[test]
fn a_stated_role_wins_and_the_name_defaults_to_the_model_files_stem() {
    let text = BASE
        .replace("name = \"gemma-4-e2b-it-q4km\"\n", "revision = \"v1.2\"\n")
        .replace(
            "\"mmproj-F16.gguf\"",
            "{ path = \"vision-F16.gguf\", role = \"mmproj\" }",
        );
    let spec = parse(&text).unwrap();
    assert_eq!(spec.model, "gemma-4-e2b-it-q4-k-m");
    let intent = spec.model_intent.unwrap();
    assert_eq!(intent.revision, "v1.2");
    assert_eq!(intent.files[1].role, FileRole::Mmproj);
}

#[test]
fn the_string_form_keeps_its_hash_and_the_intent_counts_in_it() {
    let plain = Spec::parse(tests::PANDA, Path::new("p.toml")).unwrap();
    assert!(plain.model_intent.is_none());
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("model_intent"), "{json}");
    let a = parse(BASE).unwrap();
    let b = parse(
        &BASE
            .replace("\"main\"", "\"v2\"")
            .replace("files = [", "revision = \"v2\"\nfiles = ["),
    )
    .unwrap();
    assert_ne!(a.sha256(), b.sha256(), "a changed source is a changed spec");
}

#[test]
fn bad_intent_names_the_line_and_field() {
    let cases = [
        (BASE.replace("repo = \"unsloth/gemma-4-E2B-it-GGUF\"\n", ""), "docker/x.toml:6: model.repo: the hub repository is required"),
        (BASE.replace("unsloth/gemma-4-E2B-it-GGUF", "gemma"), "docker/x.toml:8: model.repo: \"gemma\" is not a hub repository id"),
        (BASE.replace("files = [", "revision = \"../x\"\nfiles = ["), "docker/x.toml:9: model.revision: \"../x\" is not a branch"),
        (BASE.replace("files = [", "revision = \"--upload-pack=x\"\nfiles = ["), "model.revision"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"../mmproj-F16.gguf\""), "docker/x.toml:9: model.files: \"../mmproj-F16.gguf\": must be a relative path"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"/etc/passwd\""), "model.files: \"/etc/passwd\""),
        (BASE.replace(", \"mmproj-F16.gguf\"", ", \"gemma-4-E2B-it-Q8_0.gguf\""), "2 model file(s) and 0 projector(s)"),
        (BASE.replace("\"gemma-4-E2B-it-Q4_K_M.gguf\", ", ""), "0 model file(s) and 1 projector(s)"),
        (BASE.replace("files = [\"gemma-4-E2B-it-Q4_K_M.gguf\", \"mmproj-F16.gguf\"]", "files = []"), "0 model file(s)"),
        (BASE.replace("files = [", "file = 1\nfiles = ["), "docker/x.toml:9: model.file: unknown key `file`"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"mmproj/\""), "ending in '/'"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"%2e%2e/%2e%2e/%2e%2e/%2e%2e/evil/repo/resolve/main/mmproj.gguf\""), "docker/x.toml:9: model.files: \"%2e%2e/%2e%2e/%2e%2e/%2e%2e/evil/repo/resolve/main/mmproj.gguf\": '%', '?' and '#' are not allowed"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"mmproj.gguf?x\""), "docker/x.toml:9: model.files: \"mmproj.gguf?x\": '%'"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"mmproj#.gguf\""), "docker/x.toml:9: model.files: \"mmproj#.gguf\": '%'"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"mm\\tproj.gguf\""), "control character"),
        (BASE.replace("files = [", "dir = \"models/here\"\nfiles = ["), "docker/x.toml:9: model.dir: \"models/here\": give an absolute path"),
        (BASE.replace("files = [", "dir = \"~other/m\"\nfiles = ["), "model.dir"),
        (BASE.replace("name = \"gemma-4-e2b-it-q4km\"\n", "").replace("gemma-4-E2B-it-Q4_K_M.gguf", "é.gguf"), "(made from the model file's name: set `name`)"),
        (BASE.replace("\"mmproj-F16.gguf\"", "{ path = \"m.gguf\", role = \"vision\" }"), "role \"vision\": expected"),
        (BASE.replace("name = \"gemma-4-e2b-it-q4km\"", "name = \"a/b\""), "docker/x.toml:7: model.name: \"a/b\" is not a valid lock entry name"),
        (BASE.replace("[model]\nname = \"gemma-4-e2b-it-q4km\"\nrepo = \"unsloth/gemma-4-E2B-it-GGUF\"\nfiles = [\"gemma-4-E2B-it-Q4_K_M.gguf\", \"mmproj-F16.gguf\"]\n", "model = 7\n"), "model: 7: expected the name of a weights.lock entry"),
        (BASE.replace("\"mmproj-F16.gguf\"", "\"gemma-4-E2B-it-Q4_K_M.gguf\""), "listed twice"),
    ];
    for (text, want) in cases {
        let got = parse(&text).unwrap_err();
        assert!(got.contains(want), "want {want:?} in:\n{got}");
    }
}

#[test]
fn the_images_health_check_is_aimed_at_the_servers_port() {
    let owned = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let spec = parse(BASE).unwrap();
    assert_eq!(
        spec.health_probe(Some(&owned(&LLAMA_CPP_HEALTHCHECK))),
        HealthProbe::Probe(owned(&[
            "CMD",
            "curl",
            "-f",
            "http://127.0.0.1:11435/health"
        ]))
    );
    let shell = owned(&[
        "CMD-SHELL",
        "wget -q -O- http://localhost:8080/health || exit 1",
    ]);
    assert_eq!(
        spec.health_probe(Some(&shell)),
        HealthProbe::Probe(owned(&[
            "CMD-SHELL",
            "wget -q -O- http://127.0.0.1:11435/health || exit 1"
        ]))
    );
    let v6 = parse(&BASE.replace("127.0.0.1", "::1")).unwrap();
    assert_eq!(
        v6.health_probe(Some(&owned(&LLAMA_CPP_HEALTHCHECK))),
        HealthProbe::Probe(owned(&["CMD", "curl", "-f", "http://[::1]:11435/health"]))
    );
    assert_eq!(
        spec.health_probe(Some(&owned(&["CMD", "pgrep", "llama-server"]))),
        HealthProbe::Disabled
    );
    // Shell forms as people write them: `||` right after the URL, a query, two URLs, a
    // capitalized scheme, credentials.
    let shell = owned(&[
        "CMD-SHELL",
        "curl -fs http://localhost:8080||exit 1; curl HTTP://u:p@localhost:8080/v1/models?x=1",
    ]);
    assert_eq!(
        spec.health_probe(Some(&shell)),
        HealthProbe::Probe(owned(&[
            "CMD-SHELL",
            "curl -fs http://127.0.0.1:11435||exit 1; curl http://u:p@127.0.0.1:11435/v1/models?x=1"
        ]))
    );
    assert_eq!(
        spec.health_probe(Some(&owned(&["NONE"]))),
        HealthProbe::None
    );
    assert_eq!(spec.health_probe(None), HealthProbe::None);
}

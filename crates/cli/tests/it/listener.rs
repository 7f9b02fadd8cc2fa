//! Listener settings the config format accepts (MAS has them) but Vestibule
//! cannot honour yet: `config check` and `server` both refuse them, naming
//! the key, and the server does so before touching the database.

use crate::support::{
    Server, free_port, generate_config, read_yaml, run, vestibule, write_config_for, write_yaml,
};

fn refuses(edit: impl FnOnce(&mut serde_yaml::Value), path: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gen_path = generate_config(tmp.path());
    let port = free_port();
    let config = tmp.path().join("bad.yaml");
    let db = tmp.path().join("db.sqlite");
    write_config_for(
        &gen_path,
        &config,
        &format!("sqlite://{}", db.display()),
        port,
    );
    let mut doc = read_yaml(&config);
    edit(&mut doc["http"]["listeners"][0]);
    write_yaml(&config, &doc);

    let out = run(vestibule().args(["config", "check", "-c"]).arg(&config));
    out.assert_failure();
    assert!(
        out.stderr.contains(path),
        "`config check` does not name `{path}`: {out}"
    );

    let mut cmd = vestibule();
    cmd.arg("-c").arg(&config).arg("server");
    let out = Server::spawn(cmd).wait_startup_failure();
    out.assert_failure();
    assert!(
        out.stderr.contains(path),
        "`server` does not name `{path}`: {out}"
    );
    assert!(!db.exists(), "the database was created before the refusal");
}

#[test]
fn bad_listener() {
    refuses(
        |l| {
            l["tls"] = serde_yaml::from_str("{certificate: x, key: y}").expect("YAML");
        },
        "http.listeners[0].tls",
    );
    refuses(
        |l| l["proxy_protocol"] = true.into(),
        "http.listeners[0].proxy_protocol",
    );
    refuses(
        |l| l["binds"][0] = serde_yaml::from_str("{fd: 0}").expect("YAML"),
        "http.listeners[0].binds[0]",
    );
}

//! The database image's entrypoint, run with the local `mariadbd`: on an empty data directory
//! `mariadb-install-db`, then a temporary `--skip-networking` server (TCP refused) that loads the time zone tables
//! (unless `MARIADB_INITDB_SKIP_TZINFO` / `MYSQL_INITDB_SKIP_TZINFO` is set), sets the root password and creates
//! `root@'%'` with the binlog off, then the real server, reading /etc/mysql/my.cnf and conf.d like the official
//! images.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::runner::Ctx;

/// Absolute paths of the database programs (the container's root is an overlay of the host's).
#[derive(Clone, Debug)]
pub struct Programs {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    pub client: PathBuf,
}

const MY_CNF: &str = "/etc/mysql/my.cnf";
const SOCKET: &str = "/run/mysqld/mysqld.sock";
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// How the root account is set up on first start.
#[derive(Clone, PartialEq, Eq)]
pub enum RootPassword {
    Set(String),
    Empty,
    Random,
}

impl std::fmt::Debug for RootPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootPassword::Set(_) => f.write_str("Set(<redacted>)"),
            RootPassword::Empty => f.write_str("Empty"),
            RootPassword::Random => f.write_str("Random"),
        }
    }
}

fn lookup<'a>(env: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str()))
}

fn truthy(value: Option<&str>) -> bool {
    value
        .is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("no") && !v.eq_ignore_ascii_case("false"))
}

/// The image's password rules (MARIADB_* with the MYSQL_* aliases), or its error message.
pub fn root_password(env: &[(String, String)]) -> Result<RootPassword, String> {
    if let Some(password) = lookup(env, &["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"]).filter(|p| !p.is_empty()) {
        return Ok(RootPassword::Set(password.to_string()));
    }
    if truthy(lookup(
        env,
        &["MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "MYSQL_ALLOW_EMPTY_PASSWORD"],
    )) {
        return Ok(RootPassword::Empty);
    }
    if truthy(lookup(
        env,
        &["MARIADB_RANDOM_ROOT_PASSWORD", "MYSQL_RANDOM_ROOT_PASSWORD"],
    )) {
        return Ok(RootPassword::Random);
    }
    Err(
        "Database is uninitialized and password option is not specified\n\tYou need to specify one of \
         MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and \
         MARIADB_RANDOM_ROOT_PASSWORD"
            .to_string(),
    )
}

/// Whether the first start skips loading the time zone tables. Both images test `-z` on the variable, so any
/// non-empty value skips ("0" and "no" too); the mariadb image first defaults MARIADB_INITDB_SKIP_TZINFO from
/// MYSQL_INITDB_SKIP_TZINFO (docker-library/mysql and MariaDB/mariadb-docker entrypoints, `docker_setup_db`).
pub fn skips_tzinfo(env: &[(String, String)]) -> bool {
    ["MARIADB_INITDB_SKIP_TZINFO", "MYSQL_INITDB_SKIP_TZINFO"]
        .iter()
        .any(|name| lookup(env, &[name]).is_some_and(|value| !value.is_empty()))
}

/// Loads the time zone tables into the temporary server as the mariadb image does:
/// `mariadb-tzinfo-to-sql --skip-write-binlog /usr/share/zoneinfo | mariadb ... --database=mysql`, under
/// `set -eo pipefail` as in the entrypoint. Returns the exit code; what is missing is named in the log.
async fn load_tzinfo(ctx: &Ctx<'_>, programs: &Programs, client: &[String]) -> i32 {
    let tool = programs.client.with_file_name("mariadb-tzinfo-to-sql");
    let missing = if !tool.is_file() {
        Some(format!("{} is missing (it comes with mariadb-server)", tool.display()))
    } else if !Path::new(ZONEINFO).is_dir() {
        Some(format!("{ZONEINFO} is missing (install tzdata)"))
    } else {
        None
    };
    let Some(bash) = super::sys::find_program("bash") else {
        note(ctx, "ERROR", "cannot load the time zone tables: bash is missing");
        return 127;
    };
    if let Some(missing) = missing {
        note(
            ctx,
            "ERROR",
            &format!(
                "cannot load the time zone tables: {missing}; set MARIADB_INITDB_SKIP_TZINFO to start without them"
            ),
        );
        return 1;
    }
    let script = format!("set -eo pipefail; \"$0\" --skip-write-binlog {ZONEINFO} | \"$@\"");
    let mut argv = vec![
        bash.to_string_lossy().to_string(),
        "-c".to_string(),
        script,
        tool.to_string_lossy().to_string(),
    ];
    argv.extend(client.iter().cloned());
    ctx.run(&argv, None).await
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn identifier(value: &str) -> String {
    format!("`{}`", value.replace('`', "``"))
}

/// The SQL the temporary server runs: system users secured without writing the binlog, then the optional
/// database and user (binlogged, as in the image).
pub fn first_start_sql(password: &str, database: Option<&str>, user: Option<(&str, &str)>) -> String {
    let password = quote(password);
    let mut sql = format!(
        "SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');\n\
         SET @orig_sql_log_bin= @@SESSION.SQL_LOG_BIN;\n\
         SET @@SESSION.SQL_LOG_BIN=0;\n\
         DROP USER IF EXISTS root@'127.0.0.1', root@'::1';\n\
         EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname,'\\'');\n\
         SET PASSWORD FOR 'root'@'localhost'= PASSWORD({password});\n\
         CREATE USER 'root'@'%' IDENTIFIED BY {password};\n\
         GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;\n\
         GRANT PROXY ON ''@'%' TO 'root'@'%' WITH GRANT OPTION;\n\
         SET @@SESSION.SQL_LOG_BIN=@orig_sql_log_bin;\n"
    );
    if let Some(database) = database.filter(|d| !d.is_empty()) {
        sql.push_str(&format!("CREATE DATABASE IF NOT EXISTS {};\n", identifier(database)));
    }
    if let Some((name, user_password)) = user.filter(|(n, _)| !n.is_empty()) {
        sql.push_str(&format!(
            "CREATE USER {}@'%' IDENTIFIED BY {};\n",
            quote(name),
            quote(user_password)
        ));
        if let Some(database) = database.filter(|d| !d.is_empty()) {
            sql.push_str(&format!(
                "GRANT ALL ON {}.* TO {}@'%';\n",
                identifier(database),
                quote(name)
            ));
        }
    }
    sql
}

fn note(ctx: &Ctx<'_>, level: &str, message: &str) {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S+00:00");
    ctx.sink.line(&format!("{now} [{level}] [Entrypoint]: {message}"));
}

fn random_password() -> String {
    let mut bytes = [0u8; 24];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Runs the entrypoint until the server exits or the container is killed; returns the exit code.
/// `data_dir` is the host directory mounted at /var/lib/mysql.
pub async fn run(
    ctx: &Ctx<'_>,
    programs: &Programs,
    env: &[(String, String)],
    data_dir: &Path,
    server_args: &[String],
    slow_first_start: Option<Duration>,
) -> i32 {
    note(
        ctx,
        "Note",
        "Entrypoint script for MariaDB Server (kubesim: local mariadbd) started.",
    );
    let mariadbd = programs.mariadbd.to_string_lossy().to_string();
    // As the image does first: a config the server rejects (an unknown option) ends the container here.
    let check: Vec<String> = [
        mariadbd.as_str(),
        &format!("--defaults-file={MY_CNF}"),
        "--verbose",
        "--help",
        "--log-bin-index=/tmp/check-index",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(server_args.iter().cloned())
    .collect();
    match ctx.errors_of(&check).await {
        Ok((0, _)) => {}
        Ok((_, errors)) => {
            note(
                ctx,
                "ERROR",
                &format!(
                    "mariadbd failed while attempting to check config\n\tcommand was: {}\n\t{errors}",
                    check.join(" ")
                ),
            );
            return 1;
        }
        Err(error) => {
            if ctx.kill.is_cancelled() {
                return 143;
            }
            note(ctx, "ERROR", &format!("cannot run mariadbd: {error}"));
            return 127;
        }
    }
    if !data_dir.join("mysql").is_dir() {
        let password = match root_password(env) {
            Ok(RootPassword::Set(password)) => password,
            Ok(RootPassword::Empty) => String::new(),
            Ok(RootPassword::Random) => {
                let password = random_password();
                note(ctx, "Note", &format!("GENERATED ROOT PASSWORD: {password}"));
                password
            }
            Err(message) => {
                note(ctx, "ERROR", &message);
                return 1;
            }
        };
        note(ctx, "Note", "Initializing database files");
        let install: Vec<String> = [
            programs.install_db.to_string_lossy().as_ref(),
            &format!("--defaults-file={MY_CNF}"),
            "--datadir=/var/lib/mysql",
            "--user=root",
            "--rpm",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--default-time-zone=SYSTEM",
            "--enforce-storage-engine=",
            "--skip-log-bin",
            "--expire-logs-days=0",
            "--loose-innodb_buffer_pool_load_at_startup=0",
            "--loose-innodb_buffer_pool_dump_at_shutdown=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let code = ctx.run(&install, None).await;
        if code != 0 || ctx.kill.is_cancelled() {
            return if code == 0 { 143 } else { code };
        }
        note(ctx, "Note", "Database files initialized");
        note(ctx, "Note", "Starting temporary server");
        let temporary: Vec<String> = [
            mariadbd.as_str(),
            &format!("--defaults-file={MY_CNF}"),
            "--skip-networking",
            "--default-time-zone=SYSTEM",
            &format!("--socket={SOCKET}"),
            "--wsrep_on=OFF",
            "--expire-logs-days=0",
            "--skip-slave-start",
            "--loose-innodb_buffer_pool_load_at_startup=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut lines = ctx.sink.subscribe();
        let mut server = match ctx.spawn(&temporary, None).await {
            Ok(server) => server,
            Err(error) => {
                note(ctx, "ERROR", &format!("cannot start mariadbd: {error}"));
                return 127;
            }
        };
        // The server prints "ready for connections" once its socket accepts: that line is the event to wait for.
        let ready = async {
            loop {
                match lines.recv().await {
                    Ok(line) if line.contains("ready for connections") => return true,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        tokio::select! {
            _ = ready => {}
            code = ctx.wait(&mut server) => {
                note(ctx, "ERROR", "Unable to start server.");
                return if code == 0 { 1 } else { code };
            }
        }
        note(ctx, "Note", "Temporary server started.");
        let client: Vec<String> = [
            programs.client.to_string_lossy().as_ref(),
            "--no-defaults",
            "--protocol=socket",
            &format!("--socket={SOCKET}"),
            "-uroot",
            "--database=mysql",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !skips_tzinfo(env) {
            let code = load_tzinfo(ctx, programs, &client).await;
            if code != 0 || ctx.kill.is_cancelled() {
                ctx.terminate(&mut server).await;
                return if code == 0 { 143 } else { code };
            }
        }
        note(
            ctx,
            "Note",
            "Securing system users (equivalent to running mysql_secure_installation)",
        );
        let database = lookup(env, &["MARIADB_DATABASE", "MYSQL_DATABASE"]);
        let user = lookup(env, &["MARIADB_USER", "MYSQL_USER"]).map(|name| {
            (
                name,
                lookup(env, &["MARIADB_PASSWORD", "MYSQL_PASSWORD"]).unwrap_or_default(),
            )
        });
        if let Some(database) = database.filter(|d| !d.is_empty()) {
            note(ctx, "Note", &format!("Creating database {database}"));
        }
        let sql = first_start_sql(&password, database, user);
        let code = ctx.run(&client, Some(sql.into_bytes())).await;
        if code != 0 || ctx.kill.is_cancelled() {
            ctx.terminate(&mut server).await;
            return if code == 0 { 143 } else { code };
        }
        if let Some(delay) = slow_first_start {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = ctx.kill.cancelled() => {}
            }
        }
        note(ctx, "Note", "Stopping temporary server");
        ctx.terminate(&mut server).await;
        note(ctx, "Note", "Temporary server stopped");
        if ctx.kill.is_cancelled() {
            return 143;
        }
        note(ctx, "Note", "MariaDB init process done. Ready for start up.");
    } else {
        note(ctx, "Note", "MariaDB upgrade not required");
    }
    let mut server = vec![mariadbd, format!("--defaults-file={MY_CNF}")];
    server.extend(server_args.iter().cloned());
    ctx.run(&server, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn password_rules_follow_the_image() {
        assert_eq!(
            root_password(&env(&[("MYSQL_ROOT_PASSWORD", "root")])),
            Ok(RootPassword::Set("root".into()))
        );
        assert_eq!(
            root_password(&env(&[("MYSQL_ROOT_PASSWORD", "a"), ("MARIADB_ROOT_PASSWORD", "b")])),
            Ok(RootPassword::Set("b".into()))
        );
        assert_eq!(
            root_password(&env(&[("MYSQL_ALLOW_EMPTY_PASSWORD", "yes")])),
            Ok(RootPassword::Empty)
        );
        assert_eq!(
            root_password(&env(&[("MARIADB_RANDOM_ROOT_PASSWORD", "1")])),
            Ok(RootPassword::Random)
        );
        let missing = root_password(&env(&[("MYSQL_ALLOW_EMPTY_PASSWORD", "")])).expect_err("no password");
        assert!(missing.contains("password option is not specified"));
        assert_eq!(format!("{:?}", RootPassword::Set("secret".into())), "Set(<redacted>)");
    }

    #[test]
    fn any_non_empty_skip_variable_skips_the_time_zone_tables() {
        assert!(!skips_tzinfo(&env(&[])));
        assert!(!skips_tzinfo(&env(&[("MARIADB_INITDB_SKIP_TZINFO", "")])));
        // `-z` in the entrypoints: any text skips, "0" and "no" included.
        assert!(skips_tzinfo(&env(&[("MARIADB_INITDB_SKIP_TZINFO", "0")])));
        assert!(skips_tzinfo(&env(&[("MYSQL_INITDB_SKIP_TZINFO", "yes")])));
        assert!(skips_tzinfo(&env(&[
            ("MARIADB_INITDB_SKIP_TZINFO", ""),
            ("MYSQL_INITDB_SKIP_TZINFO", "1")
        ])));
    }

    #[test]
    fn first_start_sql_creates_root_everywhere_without_binlog_and_escapes() {
        let sql = first_start_sql("it's\\", Some("appdb"), Some(("app", "pw")));
        let log_off = sql.find("SET @@SESSION.SQL_LOG_BIN=0;").expect("binlog off");
        let root = sql
            .find("CREATE USER 'root'@'%' IDENTIFIED BY 'it\\'s\\\\';")
            .expect("root@%");
        let grant = sql
            .find("GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;")
            .expect("grant");
        let restored = sql
            .find("SET @@SESSION.SQL_LOG_BIN=@orig_sql_log_bin;")
            .expect("restore");
        let database = sql.find("CREATE DATABASE IF NOT EXISTS `appdb`;").expect("database");
        assert!(log_off < root && root < grant && grant < restored && restored < database);
        assert!(sql.contains("GRANT ALL ON `appdb`.* TO 'app'@'%';"));
    }
}

//! SIGHUP: the `--config` file read again, and what changed applied without a restart.
//! Without a `--config` file the command line is read again, which still re-reads the files
//! it names: a certificate renewed in place, the MOTD file, the bans file.
//!
//! A reload is two steps, so that a file that does not parse or validate changes nothing.
//! [`load`] does everything that can fail: the command line is parsed again over the file
//! (flags still win), the MOTD read and checked, the certificate loaded. Only then does
//! [`apply`] change the running server, and nothing in it can fail. Start-up goes through
//! [`load`] too, so a reload refuses exactly what start-up refuses. What the server set up
//! once (listeners, the backplane, the stats socket, the log file) runs on as it is: a reload
//! that changes it names those keys in one warning and applies the rest ([`keep_running`]).
//!
//! **To make a new setting change live:** give it a field in `Config` (and a flag in `cli.rs`:
//! its file key comes with it); read or check what it needs in [`load`], into [`Loaded`] (an
//! error there refuses the whole reload, at start it stops start-up); set it in [`apply`],
//! where nothing may fail; say what it did in [`Report`] if the log should tell. A setting
//! only a restart can change goes in [`keep_running`] instead.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use log::{error, info, warn};
use rustls::ServerConfig;

use super::{Server, accept};
use crate::bans::{self, BanList};
use crate::config::{Config, Motd};
use crate::config_file;
use crate::error::{Error, describe};
use crate::limits::MAX_MOTD;
use crate::protocol;
use crate::rate_limit::ConnectRates;
use crate::table::ConnRules;
use crate::transport::tls;

/// A configuration with what it names read from disk and checked: ready to run with.
pub(super) struct Loaded {
    pub config: Config,
    /// The MOTD as server lines (empty: none).
    pub motd: Rc<str>,
    /// The certificate and key, when TLS is on.
    pub tls: Option<Arc<ServerConfig>>,
    /// The bans in `bans-file`, read again: an operator may have edited it.
    pub bans: Option<BanList>,
}

/// What a reload did, for its log lines.
pub(super) struct Report {
    /// Keys changed in the file that only a restart applies.
    pub restart: Vec<&'static str>,
}

/// Reads and checks what `config` names: at start, and for a reload before anything changes.
pub(super) fn load(config: Config) -> Result<Loaded, Error> {
    let text = match &config.motd {
        None => String::new(),
        Some(Motd::Text(text)) => text.clone(),
        Some(Motd::File(path)) => read_motd(path)?,
    };
    if text.len() > MAX_MOTD {
        let why = format!("the message of the day is over the {MAX_MOTD} bytes allowed");
        return Err(Error::Config(why));
    }
    let tls = match &config.tls {
        Some(settings) => Some(tls::server_config(&settings.cert, &settings.key)?),
        None => None,
    };
    let motd = Rc::from(protocol::motd(&text));
    let bans = config.bans_file.as_deref().map(bans::load).transpose();
    let bans = bans.map_err(Error::Config)?;
    Ok(Loaded {
        config,
        motd,
        tls,
        bans,
    })
}

/// `--motd-file`, read up to one byte past the bound (enough to know it is too long).
fn read_motd(path: &Path) -> Result<String, Error> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|file| file.take(MAX_MOTD as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            let (path, why) = (path.display(), describe(&e));
            Error::Config(format!("motd-file {path} cannot be read: {why}"))
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// SIGHUP: the file read again and applied, or refused whole with one `error` line; counted
/// by result either way.
pub(super) fn on_sighup(server: &mut Server) {
    let Some(args) = server.clients.config.reload_args.clone() else {
        return info!("SIGHUP: this server has no command line to read again; nothing changes");
    };
    let loaded = config_file::parse(args.clone()).and_then(|(cli, _)| {
        let mut config = cli.config();
        config.reload_args = Some(args);
        load(config)
    });
    let result = match loaded {
        Ok(new) => {
            let report = apply(server, new);
            if !report.restart.is_empty() {
                let keys = report.restart.join(", ");
                warn!("reload: {keys} changed, which only a restart applies; the rest is applied");
            }
            info!("reload: configuration reloaded");
            "ok"
        }
        Err(e) => {
            let why = e.to_string();
            let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
            error!("reload refused, nothing changed: {why}");
            "error"
        }
    };
    let reloads = &mut server.clients.table.stats.reloads;
    *reloads.entry(result).or_insert(0) += 1;
}

/// The one place a new configuration takes effect. See the module documentation.
pub(super) fn apply(server: &mut Server, new: Loaded) -> Report {
    let mut config = new.config;
    let clients = &mut server.clients;
    let restart = keep_running(&clients.config, &mut config);
    clients.table.rules = ConnRules::new(&config);
    let max_clients = accept::max_clients(config.max_clients);
    clients.hub.configure(&config, max_clients);
    clients.hub.chat.motd = new.motd;
    clients.hub.chat.moderation.operators.configure(&config);
    if let Some(list) = new.bans {
        clients.hub.chat.replace_bans(list, &mut clients.table);
        clients.hub.forward(&mut clients.table);
    }
    let rates = |c: &Config| (c.connect_rate, c.connect_burst, c.connect_rate_loopback);
    if rates(&clients.config) != rates(&config) {
        let (rate, burst, loopback) = rates(&config);
        server.listeners.connect_rates = ConnectRates::new(rate, burst, loopback);
    }
    if let (Some(streams), Some(tls), Some(settings)) =
        (&server.listeners.tls, new.tls, &config.tls)
    {
        streams.swap(tls, settings.handshake_timeout);
    }
    log::set_max_level(config.log_level);
    clients.config = config;
    Report { restart }
}

/// What only a restart changes: the keys `new` changes of it, each set back to what runs.
fn keep_running(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut keep = |key, differs: bool| keys.extend(differs.then_some(key));
    keep("bind/tls-only", old.bind != new.bind);
    let tls_on = old.tls.is_some() == new.tls.is_some();
    keep("tls-cert", !tls_on);
    let tls_bind = |c: &Config| c.tls.as_ref().map(|t| t.bind.clone());
    keep("tls-bind", tls_on && tls_bind(old) != tls_bind(new));
    let http = |c: &Config| {
        c.http
            .clone()
            .map(|h| (h.bind, h.https_bind, h.head_timeout))
    };
    let (was, is) = (http(old).unwrap_or_default(), http(new).unwrap_or_default());
    keep("http-bind", was.0 != is.0);
    keep("https-bind", was.1 != is.1);
    keep(
        "http-head-timeout",
        old.http.is_some() && new.http.is_some() && was.2 != is.2,
    );
    let url = |c: &Config| c.backplane.as_ref().map(|b| b.url.clone());
    keep("backplane", url(old) != url(new));
    keep(
        "backplane-nick-ttl",
        url(old) == url(new) && old.backplane != new.backplane,
    );
    keep("stats-udp", old.stats_udp != new.stats_udp);
    keep("log-file", old.log_file != new.log_file);
    keep("bans-file", old.bans_file != new.bans_file);
    keep("state-dir", old.state_dir != new.state_dir);
    keep("fsync", old.fsync != new.fsync);
    new.bind.clone_from(&old.bind);
    match (&old.tls, &mut new.tls) {
        (Some(old), Some(new)) => new.bind.clone_from(&old.bind),
        (old, new) => new.clone_from(old),
    }
    new.http.clone_from(&old.http);
    new.backplane.clone_from(&old.backplane);
    new.stats_udp = old.stats_udp;
    new.log_file.clone_from(&old.log_file);
    new.bans_file.clone_from(&old.bans_file);
    new.state_dir.clone_from(&old.state_dir);
    new.fsync = old.fsync;
    keys
}

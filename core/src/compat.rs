//! The compat shim: the legacy singleton calls (`connect_user`,
//! `disconnect_user`, `send_to_user`, `get_user_connections`, `get_stats`)
//! over isolated managers, with real call-site tracking.
//!
//! Every legacy method is `#[deprecated]`, so the compiler lists each call
//! site at build time, and `#[track_caller]`, so each call records the
//! `file:line:column` of its caller in a bounded [`CallSites`] table (counts
//! per site; the first call of a site logs one migration warning; calls
//! beyond the table's capacity are counted, not lost).
//!
//! Each call routes to the user's own isolated manager and obeys every rule
//! of the core: limits, deactivation, the offline buffer. Metadata can never
//! change the user: a mismatch is an isolation violation, refused before
//! anything is created, so no orphan manager is left behind.

use core::panic::Location;

use crate::log::{log_refusal, log_warn};
use crate::{
    CloseCode, Config, ConfigError, ConnectionHandle, Creation, Error, Instant, ManagerFactory,
    ManagerHandle, SendOutcome, SlotIndex, Stats, UserContext, Violation,
};

/// What the seed's `get_stats` recommended, and ours still does.
pub const RECOMMENDED_ACTION: &str =
    "Migrate to ManagerFactory::create_manager (or userlane_smol::compat::create_websocket_manager) per user";

/// A legacy method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LegacyMethod {
    /// `connect_user`
    ConnectUser,
    /// `disconnect_user`
    DisconnectUser,
    /// `send_to_user`
    SendToUser,
    /// `get_user_connections`
    GetUserConnections,
    /// `get_stats`
    GetStats,
}

impl LegacyMethod {
    /// The method's name.
    pub const fn name(self) -> &'static str {
        match self {
            LegacyMethod::ConnectUser => "connect_user",
            LegacyMethod::DisconnectUser => "disconnect_user",
            LegacyMethod::SendToUser => "send_to_user",
            LegacyMethod::GetUserConnections => "get_user_connections",
            LegacyMethod::GetStats => "get_stats",
        }
    }
}

/// One place in the application's source that calls a legacy method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CallSite {
    /// The legacy method called.
    pub method: LegacyMethod,
    /// Source file of the caller.
    pub file: &'static str,
    /// Line of the call.
    pub line: u32,
    /// Column of the call.
    pub column: u32,
    /// Calls made from here.
    pub count: u64,
}

/// A bounded table of legacy call sites.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CallSites<const N: usize> {
    sites: heapless::Vec<CallSite, N>,
    /// Calls from sites that did not fit in the table (still counted).
    overflow_calls: u64,
    /// Every legacy call.
    total_calls: u64,
}

impl<const N: usize> Default for CallSites<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> CallSites<N> {
    /// An empty table.
    pub const fn new() -> Self {
        CallSites {
            sites: heapless::Vec::new(),
            overflow_calls: 0,
            total_calls: 0,
        }
    }

    /// Counts one call of `method` from `at`; returns `true` for the first
    /// call from that site (the moment to warn). O(sites).
    pub fn record(&mut self, method: LegacyMethod, at: &'static Location<'static>) -> bool {
        self.total_calls += 1;
        let same = |s: &&mut CallSite| {
            s.method == method
                && s.line == at.line()
                && s.column == at.column()
                && s.file == at.file()
        };
        if let Some(site) = self.sites.iter_mut().find(|s| same(s)) {
            site.count += 1;
            return false;
        }
        let site = CallSite {
            method,
            file: at.file(),
            line: at.line(),
            column: at.column(),
            count: 1,
        };
        if self.sites.push(site).is_err() {
            self.overflow_calls += 1;
            return false;
        }
        log_warn!(
            "MIGRATION WARNING: {} is using the legacy singleton API at {}:{}; {}",
            method.name(),
            at.file(),
            at.line(),
            RECOMMENDED_ACTION
        );
        true
    }

    /// The sites recorded, in order of first call.
    pub fn sites(&self) -> &[CallSite] {
        &self.sites
    }

    /// Every legacy call counted.
    pub fn total_calls(&self) -> u64 {
        self.total_calls
    }

    /// Calls from sites beyond the table's capacity.
    pub fn overflow_calls(&self) -> u64 {
        self.overflow_calls
    }
}

/// Connection metadata a legacy caller may pass. It can name the user, but
/// never change it: a `user_id` different from the call's is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegacyMetadata<'a> {
    /// The user the metadata claims.
    pub user_id: Option<&'a str>,
    /// The thread to use instead of a generated one.
    pub thread_id: Option<&'a str>,
    /// The run to use instead of a generated one.
    pub run_id: Option<&'a str>,
    /// The connection id to put in the context.
    pub connection_id: Option<&'a str>,
}

/// The migration section of [`LegacyStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MigrationStatus<const N: usize> {
    /// Always `true`: these numbers come from the legacy facade.
    pub is_legacy_adapter: bool,
    /// Every legacy call.
    pub legacy_calls_total: u64,
    /// Sites that issued their one migration warning.
    pub warnings_issued: u64,
    /// Distinct call sites recorded.
    pub unique_warning_sites: u64,
    /// Calls from sites that did not fit in the table.
    pub overflow_calls: u64,
    /// Each call site with `file:line` and its count.
    pub sites: heapless::Vec<CallSite, N>,
    /// What to do next.
    pub recommended_action: &'static str,
}

/// The legacy `get_stats()` keys, with real values: the one legacy stats
/// type, of this facade and of the runtime's async legacy handle
/// (`userlane_smol::compat::LegacyStats` is this type), built by the one
/// mapping [`LegacyStats::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LegacyStats<const N: usize> {
    /// Open connections now.
    pub active_connections: u64,
    /// Connections ever opened.
    pub total_connections: u64,
    /// Users with an active manager.
    pub unique_users: u64,
    /// Active isolated managers (one per user).
    pub isolated_managers: u64,
    /// Default contexts the facade built for legacy callers.
    pub contexts_created: u64,
    /// Sends accepted.
    pub messages_sent: u64,
    /// Sends refused.
    pub messages_failed: u64,
    /// Isolation violations refused.
    pub security_violations: u64,
    /// The migration section.
    pub migration_status: MigrationStatus<N>,
}

impl<const N: usize> LegacyStats<N> {
    /// The legacy keys from the core's `stats`, the default contexts a
    /// facade built (`contexts_created`) and its call-site table: the one
    /// `Stats` → legacy mapping.
    pub fn new(stats: &Stats, contexts_created: u64, sites: &CallSites<N>) -> Self {
        LegacyStats {
            active_connections: stats.connections_active,
            total_connections: stats.total_connections_managed,
            unique_users: stats.users_with_active_managers(),
            isolated_managers: stats.managers_active,
            contexts_created,
            messages_sent: stats.sends_accepted,
            messages_failed: stats.sends_refused,
            security_violations: stats.security_violations_detected,
            migration_status: MigrationStatus {
                is_legacy_adapter: true,
                legacy_calls_total: sites.total_calls(),
                warnings_issued: sites.sites().len() as u64,
                unique_warning_sites: sites.sites().len() as u64,
                overflow_calls: sites.overflow_calls(),
                sites: sites.sites.clone(),
                recommended_action: RECOMMENDED_ACTION,
            },
        }
    }
}

/// The legacy singleton API over a [`ManagerFactory`], keyed by plain user ids.
///
/// The default context of a legacy call is `user_id`, `thread_id` /
/// `run_id` from the metadata or `legacy-thread-<n>` / `legacy-run-<n>`, and
/// request id `legacy-req-<n>`, with `n` a counter (the core has no
/// randomness).
pub struct LegacyManager<
    P,
    const USERS: usize,
    const CONNS: usize,
    const SLOTS: usize,
    const EVENTS: usize = 16,
    I: SlotIndex = u32,
    const SITES: usize = 64,
> {
    factory: ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>,
    sites: CallSites<SITES>,
    contexts_created: u64,
}

impl<
        P: Clone,
        const USERS: usize,
        const CONNS: usize,
        const SLOTS: usize,
        const EVENTS: usize,
        I: SlotIndex,
        const SITES: usize,
    > LegacyManager<P, USERS, CONNS, SLOTS, EVENTS, I, SITES>
{
    /// A facade over a new factory.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Ok(Self::from_factory(ManagerFactory::new(config)?))
    }

    /// A facade over an existing factory (new-path code can keep using it
    /// through [`Self::factory_mut`]).
    pub fn from_factory(factory: ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I>) -> Self {
        LegacyManager {
            factory,
            sites: CallSites::new(),
            contexts_created: 0,
        }
    }

    /// The factory, for the new API.
    pub fn factory(&self) -> &ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I> {
        &self.factory
    }

    /// The factory, for the new API.
    pub fn factory_mut(&mut self) -> &mut ManagerFactory<P, USERS, CONNS, SLOTS, EVENTS, I> {
        &mut self.factory
    }

    /// The call-site table.
    pub fn call_sites(&self) -> &CallSites<SITES> {
        &self.sites
    }

    /// The manager a legacy send goes through: the user's, or a new one
    /// made with the default context along the offline path (the runtime's
    /// legacy send does the same through `ServerHandle::send_to_user`).
    fn offline_manager_or_create(
        &mut self,
        user_id: &str,
        now: Instant,
    ) -> Result<ManagerHandle, Error> {
        let created = &mut self.contexts_created;
        self.factory.as_lanes().try_manager_or_create_with(
            user_id,
            || default_context(created, user_id, &LegacyMetadata::default()),
            Creation::Offline,
            now,
        )
    }

    /// Opens a connection for `user_id` in the user's isolated manager
    /// (created on first use). `metadata.user_id`, if given, must be
    /// `user_id`: otherwise the call is refused as an isolation violation
    /// (naming the user's manager, or [`ManagerHandle::NONE`] if it has
    /// none) and nothing is created.
    #[deprecated(
        note = "legacy singleton API: use ManagerFactory::create_manager + add_connection per user"
    )]
    #[track_caller]
    pub fn connect_user(
        &mut self,
        user_id: &str,
        metadata: LegacyMetadata<'_>,
        now: Instant,
    ) -> Result<ConnectionHandle, Error> {
        self.sites
            .record(LegacyMethod::ConnectUser, Location::caller());
        if metadata.user_id.is_some_and(|claimed| claimed != user_id) {
            // Refused before anything is created: no orphan manager, and counted.
            let manager = self
                .factory
                .manager_for_user(user_id)
                .unwrap_or(ManagerHandle::NONE);
            let e = Error::IsolationViolation {
                manager,
                violation: Violation::ForeignUser,
            };
            self.factory.count_external_refusal(&e);
            log_refusal(&e);
            return Err(e);
        }
        let ctx = default_context(&mut self.contexts_created, user_id, &metadata)?;
        let manager =
            self.factory
                .as_lanes()
                .manager_or_create_with(user_id, || ctx.clone(), now)?;
        self.factory
            .add_connection(manager, &ctx, now)
            .inspect_err(log_refusal)
    }

    /// Closes one connection of `user_id` with `code`; it stops counting
    /// toward the limits at once (its table slot is released by
    /// `handle_closed` once the close frame is written).
    #[deprecated(
        note = "legacy singleton API: use ManagerFactory::close_connection or remove_connection"
    )]
    #[track_caller]
    pub fn disconnect_user(
        &mut self,
        user_id: &str,
        connection: ConnectionHandle,
        code: CloseCode,
        now: Instant,
    ) -> Result<(), Error> {
        self.sites
            .record(LegacyMethod::DisconnectUser, Location::caller());
        let manager = self
            .factory
            .manager_for_user(user_id)
            .ok_or(Error::UnknownConnection(connection))?;
        self.factory
            .close_connection(manager, connection, code, now)
            .inspect_err(log_refusal)
    }

    /// Sends to every open connection of `user_id`; with none, the message
    /// goes to the user's offline buffer (a manager is created along the
    /// offline path if needed, bounded by
    /// [`Config::max_offline_managers`]), or fails with
    /// [`Error::NoConnections`] when buffering is off. Never a silent drop.
    #[deprecated(
        note = "legacy singleton API: use ManagerFactory::send_to_user with the user's ManagerHandle"
    )]
    #[track_caller]
    pub fn send_to_user(
        &mut self,
        user_id: &str,
        message: P,
        now: Instant,
    ) -> Result<SendOutcome, Error> {
        self.sites
            .record(LegacyMethod::SendToUser, Location::caller());
        let manager = self.offline_manager_or_create(user_id, now)?;
        self.factory
            .send_to_user(manager, message, now)
            .map_err(Error::from)
    }

    /// The open connections of `user_id` (none for an unknown user).
    #[deprecated(
        note = "legacy singleton API: use ManagerFactory::connections with the user's ManagerHandle"
    )]
    #[track_caller]
    pub fn get_user_connections(
        &mut self,
        user_id: &str,
    ) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.sites
            .record(LegacyMethod::GetUserConnections, Location::caller());
        let factory = &self.factory;
        factory
            .manager_for_user(user_id)
            .and_then(|m| factory.connections(m).ok())
            .into_iter()
            .flatten()
    }

    /// The legacy stats keys with real values, plus the migration status.
    #[deprecated(
        note = "legacy singleton API: use ManagerFactory::stats and LegacyManager::call_sites"
    )]
    #[track_caller]
    pub fn get_stats(&mut self) -> LegacyStats<SITES> {
        self.sites
            .record(LegacyMethod::GetStats, Location::caller());
        LegacyStats::new(&self.factory.stats(), self.contexts_created, &self.sites)
    }
}

/// A context for a legacy call: `metadata`'s ids, or numbered defaults;
/// counts it in `created`.
fn default_context(
    created: &mut u64,
    user_id: &str,
    meta: &LegacyMetadata<'_>,
) -> Result<UserContext, Error> {
    use core::fmt::Write;
    let n = *created;
    let mut thread: heapless::String<32> = heapless::String::new();
    let mut run: heapless::String<32> = heapless::String::new();
    let mut req: heapless::String<32> = heapless::String::new();
    // 32 bytes hold the prefix and any u64.
    let _ = write!(thread, "legacy-thread-{n}");
    let _ = write!(run, "legacy-run-{n}");
    let _ = write!(req, "legacy-req-{n}");
    let ctx = UserContext::new(
        user_id,
        meta.thread_id.unwrap_or(&thread),
        meta.run_id.unwrap_or(&run),
        &req,
    )?;
    let ctx = match meta.connection_id {
        Some(c) => ctx.with_connection_id(c)?,
        None => ctx,
    };
    *created += 1;
    Ok(ctx)
}

//! Reaching a service manager: which D-Bus address stands for the user's or the system's bus,
//! connecting and checking that systemd answers there (its `Version`), and the one way every
//! call is made ([`Manager::call`]) with its errors sorted by whether a retry can help.
//!
//! The user's bus is `$DBUS_SESSION_BUS_ADDRESS`, else `unix:path=$XDG_RUNTIME_DIR/bus` (what
//! dbus-user-session's `dbus.socket` listens on); the system's is `$DBUS_SYSTEM_BUS_ADDRESS`,
//! else `unix:path=/run/dbus/system_bus_socket` (what zbus's `Connection::system()` uses). The
//! address is kept: each subscription gets a connection of its own ([`super::events`]).

use super::{BusError, Manager};
use crate::config::SystemdBus;
use std::time::Duration;
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;
use zbus::message::Message;

pub const DESTINATION: &str = "org.freedesktop.systemd1";
pub const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";
pub const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";

/// How long a call may wait for its reply: D-Bus's (and systemctl's) default. Actions return
/// their job at once; waiting for the job is bounded by the caller's own deadline.
const METHOD_TIMEOUT: Duration = Duration::from_secs(25);
/// Signals a subscription's connection holds for a reader that is behind.
const MAX_QUEUED: usize = 1024;

/// The address of `bus` from the environment; `Err` is the reason when there is none.
pub fn address_from_env(bus: SystemdBus) -> Result<String, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match bus {
        SystemdBus::User => {
            session_address(var("DBUS_SESSION_BUS_ADDRESS"), var("XDG_RUNTIME_DIR"))
        }
        SystemdBus::System => Ok(var("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|| "unix:path=/run/dbus/system_bus_socket".to_owned())),
    }
}

fn session_address(
    dbus_session_bus_address: Option<String>,
    xdg_runtime_dir: Option<String>,
) -> Result<String, String> {
    match (dbus_session_bus_address, xdg_runtime_dir) {
        (Some(address), _) => Ok(address),
        (None, Some(dir)) => Ok(format!("unix:path={}/bus", dir.trim_end_matches('/'))),
        (None, None) => Err("neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set".into()),
    }
}

/// What to do when `bus` cannot be reached.
pub fn fix(bus: SystemdBus) -> String {
    match bus {
        SystemdBus::User => "Is the user's D-Bus running (Debian: the dbus-user-session package; \
            `systemctl --user status dbus.socket`) and XDG_RUNTIME_DIR set (a login session sets \
            it; sudo and su do not: use `machinectl shell USER@` or set \
            XDG_RUNTIME_DIR=/run/user/UID)? Without a bus (lbproxy up, a container), list the \
            backends in `backends` instead of `discover`"
            .to_owned(),
        SystemdBus::System => "Is this host booted with systemd, and is dbus running \
            (`systemctl status dbus`)? Without a bus (a container), list the backends in \
            `backends` instead of `discover`"
            .to_owned(),
    }
}

fn unavailable(bus: SystemdBus, reason: String) -> BusError {
    BusError::Unavailable {
        bus: bus.as_str(),
        reason,
        fix: fix(bus),
    }
}

/// A connection to `address`, not yet checked for systemd.
pub fn open(bus: SystemdBus, address: &str) -> Result<Connection, BusError> {
    Builder::address(address)
        .and_then(|b| {
            b.method_timeout(METHOD_TIMEOUT)
                .max_queued(MAX_QUEUED)
                .build()
        })
        .map_err(|e| unavailable(bus, format!("cannot connect to {address}: {e}")))
}

/// Connects to `address` as `bus` and asks systemd for its version.
pub fn connect(bus: SystemdBus, address: &str) -> Result<Manager, BusError> {
    let connection = open(bus, address)?;
    let manager = Manager {
        bus,
        address: address.to_owned(),
        connection,
    };
    manager.version().map_err(|e| {
        unavailable(
            bus,
            format!("systemd does not answer on {address} ({})", short(&e)),
        )
    })?;
    Ok(manager)
}

impl Manager {
    /// `Version` of the manager: `252.33-1~deb12u1`.
    pub fn version(&self) -> Result<String, BusError> {
        let reply = self.call(
            "read systemd's version",
            MANAGER_PATH,
            PROPERTIES_INTERFACE,
            "Get",
            &(MANAGER_INTERFACE, "Version"),
        )?;
        let value: zbus::zvariant::OwnedValue = body(&reply, "read systemd's version")?;
        String::try_from(value).map_err(|e| BusError::Call {
            what: "read systemd's version".into(),
            reason: e.to_string(),
        })
    }

    /// Calls `method` of systemd's object `path`; `what` names the call in errors
    /// (`restart api@1.service`).
    pub(super) fn call<B>(
        &self,
        what: &str,
        path: &str,
        interface: &str,
        method: &str,
        args: &B,
    ) -> Result<Message, BusError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.connection
            .call_method(Some(DESTINATION), path, Some(interface), method, args)
            .map_err(|e| call_error(what, e))
    }
}

/// A reply's body as `T`.
pub fn body<T>(reply: &Message, what: &str) -> Result<T, BusError>
where
    T: serde::de::DeserializeOwned + zbus::zvariant::Type,
{
    reply.body().deserialize().map_err(|e| BusError::Call {
        what: what.to_owned(),
        reason: format!("unexpected reply: {e}"),
    })
}

/// A failed call as a [`BusError`]: an error reply from systemd or the bus is a refusal, unless
/// its name says the transport failed (no reply, timeout, disconnected); anything else is a
/// transport error.
pub fn call_error(what: &str, error: zbus::Error) -> BusError {
    let (name, message) = match error {
        zbus::Error::MethodError(name, message, _) => (name.to_string(), message),
        zbus::Error::FDO(fdo) => {
            let fdo = *fdo;
            let name = zbus::DBusError::name(&fdo).to_string();
            let message = zbus::DBusError::description(&fdo).map(str::to_owned);
            (name, message)
        }
        other => {
            return BusError::Call {
                what: what.to_owned(),
                reason: other.to_string(),
            }
        }
    };
    let message = message.unwrap_or_default();
    if is_transport_error(&name) {
        BusError::Call {
            what: what.to_owned(),
            reason: format!("{message} ({name})"),
        }
    } else {
        BusError::Refused {
            what: what.to_owned(),
            name,
            message,
        }
    }
}

/// D-Bus error names that say the call did not get through, not that it was refused.
fn is_transport_error(name: &str) -> bool {
    matches!(
        name.strip_prefix("org.freedesktop.DBus.Error."),
        Some("NoReply" | "Timeout" | "TimedOut" | "Disconnected" | "NoServer" | "IOError")
    )
}

/// The D-Bus error name of `error` when it is a refusal by systemd or the bus.
pub fn error_name(error: &BusError) -> Option<&str> {
    match error {
        BusError::Refused { name, .. } => Some(name),
        _ => None,
    }
}

/// A [`BusError`] in a few words, for a reason inside another message.
fn short(error: &BusError) -> String {
    match error {
        BusError::Refused { name, message, .. } => format!("{message} ({name})"),
        BusError::Call { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_bus_is_the_session_address_else_the_runtime_dir() {
        assert_eq!(
            session_address(Some("unix:path=/x".into()), Some("/run/user/7".into())),
            Ok("unix:path=/x".to_owned())
        );
        assert_eq!(
            session_address(None, Some("/run/user/7/".into())),
            Ok("unix:path=/run/user/7/bus".to_owned())
        );
        let reason = session_address(None, None).unwrap_err();
        assert!(reason.contains("XDG_RUNTIME_DIR"), "{reason}");
    }

    #[test]
    fn error_replies_are_refusals_unless_the_transport_failed() {
        assert!(!is_transport_error(
            "org.freedesktop.DBus.Error.AccessDenied"
        ));
        assert!(!is_transport_error(
            "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
        ));
        assert!(!is_transport_error("org.freedesktop.systemd1.NoSuchUnit"));
        assert!(is_transport_error("org.freedesktop.DBus.Error.NoReply"));
        assert!(is_transport_error("org.freedesktop.DBus.Error.Timeout"));
        let error = call_error("restart x", zbus::Error::InvalidReply);
        assert!(matches!(error, BusError::Call { .. }), "{error:?}");
        let error = call_error(
            "restart x",
            zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("no".into()))),
        );
        match error {
            BusError::Refused {
                what,
                name,
                message,
            } => {
                assert_eq!(what, "restart x");
                assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied");
                assert_eq!(message, "no");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_fix_says_what_to_check_and_the_way_without_a_bus() {
        let text = unavailable(SystemdBus::User, "cannot connect".into()).to_string();
        assert!(
            text.starts_with("cannot reach the user service manager over D-Bus: cannot connect. "),
            "{text}"
        );
        assert!(
            text.contains("dbus.socket") && text.contains("XDG_RUNTIME_DIR"),
            "{text}"
        );
        assert!(text.contains("`backends` instead of `discover`"), "{text}");
        assert!(fix(SystemdBus::System).contains("systemctl status dbus"));
    }
}

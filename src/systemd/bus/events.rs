//! systemd's signals: a connection of its own per subscription, so that the subscription, its
//! match rules and its reader thread end together.
//!
//! Flow ([`open`]): connect again to the manager's bus → start reading every message the
//! connection gets (before anything can arrive, so no signal is missed) → `AddMatch` for each
//! rule → `Manager.Subscribe` (systemd emits most signals only while a client is subscribed, and
//! drops the subscription when the client's connection closes) → a thread named
//! `lbproxy-bus-events` turns the matching signals into values on an mpsc channel.
//!
//! The thread ends when the connection breaks (the receiver then sees `Disconnected`), or when
//! the [`Signals`] handle is dropped: dropping it closes the connection, which ends the thread's
//! read at once. If the close failed, the thread still ends at its next message, when sending
//! to the dropped receiver fails.

use super::connect::{self, DESTINATION, MANAGER_INTERFACE, MANAGER_PATH, PROPERTIES_INTERFACE};
use super::path::{unit_of_path, UNIT_PREFIX};
use super::{BusError, Event, Manager};
use std::sync::mpsc::{self, Receiver};
use zbus::blocking::{Connection, MessageIterator};
use zbus::message::{Message, Type};
use zbus::MatchRule;

/// The reader thread's name.
pub const THREAD_NAME: &str = "lbproxy-bus-events";

/// The connection a subscription reads its signals from; dropping it closes the connection.
#[derive(Debug)]
pub struct Signals {
    connection: Connection,
}

impl Drop for Signals {
    fn drop(&mut self) {
        // Wakes the reader thread: its stream ends with an error once the socket is shut.
        let _ = self.connection.clone().close();
    }
}

/// A signal of one of systemd's Manager's signals, on the manager's object.
pub fn manager_signal(member: &'static str) -> Result<MatchRule<'static>, zbus::Error> {
    Ok(MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(DESTINATION)?
        .path(MANAGER_PATH)?
        .interface(MANAGER_INTERFACE)?
        .member(member)?
        .build())
}

/// `PropertiesChanged` of any unit object.
fn unit_properties_changed() -> Result<MatchRule<'static>, zbus::Error> {
    Ok(MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(DESTINATION)?
        .path_namespace(UNIT_PREFIX)?
        .interface(PROPERTIES_INTERFACE)?
        .member("PropertiesChanged")?
        .build())
}

/// Subscribes on a new connection to `manager`'s bus with `rules`, and starts the thread that
/// sends what `map` makes of each message.
pub fn open<T: Send + 'static>(
    manager: &Manager,
    rules: Vec<MatchRule<'static>>,
    map: fn(&Message) -> Option<T>,
) -> Result<(Signals, Receiver<T>), BusError> {
    let connection = connect::open(manager.bus, &manager.address)?;
    let signals = Signals {
        connection: connection.clone(),
    };
    let failed = |reason: zbus::Error| BusError::Call {
        what: "subscribe to systemd's signals".into(),
        reason: reason.to_string(),
    };
    let mut messages = MessageIterator::from(&connection);
    let bus = zbus::blocking::fdo::DBusProxy::new(&connection).map_err(failed)?;
    for rule in rules {
        bus.add_match_rule(rule)
            .map_err(|e| connect::call_error("subscribe to systemd's signals", e.into()))?;
    }
    let subscriber = Manager {
        bus: manager.bus,
        address: manager.address.clone(),
        connection,
    };
    subscriber.call(
        "subscribe to systemd's signals",
        MANAGER_PATH,
        MANAGER_INTERFACE,
        "Subscribe",
        &(),
    )?;
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            for message in messages.by_ref() {
                let Ok(message) = message else { break };
                if let Some(value) = map(&message) {
                    if sender.send(value).is_err() {
                        break;
                    }
                }
            }
        })
        .map_err(|e| BusError::Call {
            what: "subscribe to systemd's signals".into(),
            reason: format!("cannot start the thread {THREAD_NAME}: {e}"),
        })?;
    Ok((signals, receiver))
}

/// [`super::Manager::subscribe`]'s rules.
pub fn rules() -> Result<Vec<MatchRule<'static>>, BusError> {
    let rules = || -> Result<_, zbus::Error> {
        Ok(vec![
            manager_signal("UnitNew")?,
            manager_signal("UnitRemoved")?,
            manager_signal("JobRemoved")?,
            unit_properties_changed()?,
        ])
    };
    rules().map_err(|e| BusError::Call {
        what: "subscribe to systemd's signals".into(),
        reason: e.to_string(),
    })
}

/// The [`Event`] a message stands for, if any.
pub fn event(message: &Message) -> Option<Event> {
    if message.message_type() != Type::Signal {
        return None;
    }
    let header = message.header();
    let interface = header.interface()?.as_str();
    let member = header.member()?.as_str();
    let body = message.body();
    match (interface, member) {
        (MANAGER_INTERFACE, "UnitNew") => {
            let (unit, _): (String, zbus::zvariant::OwnedObjectPath) = body.deserialize().ok()?;
            Some(Event::UnitNew(unit))
        }
        (MANAGER_INTERFACE, "UnitRemoved") => {
            let (unit, _): (String, zbus::zvariant::OwnedObjectPath) = body.deserialize().ok()?;
            Some(Event::UnitRemoved(unit))
        }
        (MANAGER_INTERFACE, "JobRemoved") => {
            let removed = job_removed(message)?;
            Some(Event::JobRemoved {
                unit: removed.unit,
                result: removed.result,
            })
        }
        (PROPERTIES_INTERFACE, "PropertiesChanged") => {
            Some(Event::Changed(unit_of_path(header.path()?.as_str())?))
        }
        _ => None,
    }
}

/// A `JobRemoved(id, job, unit, result)` signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRemoved {
    /// The job's object path, as the action's call returned it.
    pub job: String,
    pub unit: String,
    pub result: String,
}

/// The `JobRemoved` a message is, if it is one.
pub fn job_removed(message: &Message) -> Option<JobRemoved> {
    let header = message.header();
    if message.message_type() != Type::Signal
        || header.interface()?.as_str() != MANAGER_INTERFACE
        || header.member()?.as_str() != "JobRemoved"
    {
        return None;
    }
    let (_id, job, unit, result): (u32, zbus::zvariant::OwnedObjectPath, String, String) =
        message.body().deserialize().ok()?;
    Some(JobRemoved {
        job: job.as_str().to_owned(),
        unit,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::ObjectPath;

    fn signal<B>(path: &str, interface: &str, member: &str, body: &B) -> Message
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        Message::signal(path, interface, member)
            .unwrap()
            .build(body)
            .unwrap()
    }

    #[test]
    fn signals_read_as_events() {
        let unit_path =
            ObjectPath::try_from("/org/freedesktop/systemd1/unit/api_402_2eservice").unwrap();
        let new = signal(
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "UnitNew",
            &("api@2.service", &unit_path),
        );
        assert_eq!(event(&new), Some(Event::UnitNew("api@2.service".into())));
        let removed = signal(
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "UnitRemoved",
            &("api@2.service", &unit_path),
        );
        assert_eq!(
            event(&removed),
            Some(Event::UnitRemoved("api@2.service".into()))
        );
        let job = ObjectPath::try_from("/org/freedesktop/systemd1/job/42").unwrap();
        let done = signal(
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "JobRemoved",
            &(42u32, &job, "api@2.service", "done"),
        );
        assert_eq!(
            event(&done),
            Some(Event::JobRemoved {
                unit: "api@2.service".into(),
                result: "done".into()
            })
        );
        assert_eq!(
            job_removed(&done),
            Some(JobRemoved {
                job: "/org/freedesktop/systemd1/job/42".into(),
                unit: "api@2.service".into(),
                result: "done".into()
            })
        );
        let changed = signal(
            unit_path.as_str(),
            PROPERTIES_INTERFACE,
            "PropertiesChanged",
            &(
                "org.freedesktop.systemd1.Unit",
                std::collections::HashMap::<&str, zbus::zvariant::Value<'_>>::new(),
                Vec::<&str>::new(),
            ),
        );
        assert_eq!(
            event(&changed),
            Some(Event::Changed("api@2.service".into()))
        );
        assert_eq!(job_removed(&changed), None);
    }

    #[test]
    fn other_messages_are_no_events() {
        let reloading = signal(MANAGER_PATH, MANAGER_INTERFACE, "Reloading", &(true,));
        assert_eq!(event(&reloading), None);
        // A UnitNew with the wrong body is skipped, not a panic.
        let odd = signal(MANAGER_PATH, MANAGER_INTERFACE, "UnitNew", &(7u32,));
        assert_eq!(event(&odd), None);
        let job_changed = signal(
            "/org/freedesktop/systemd1/job/42",
            PROPERTIES_INTERFACE,
            "PropertiesChanged",
            &(
                "org.freedesktop.systemd1.Job",
                std::collections::HashMap::<&str, zbus::zvariant::Value<'_>>::new(),
                Vec::<&str>::new(),
            ),
        );
        assert_eq!(event(&job_changed), None);
    }
}

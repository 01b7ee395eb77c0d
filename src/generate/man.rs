//! Manual pages as roff: clap_mangen renders the command-line parts (name, synopsis, options,
//! subcommands); the sections clap knows nothing about (files, environment, see also) are added
//! here.

use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// One manual page: its file name (`lbproxy.8`) and its roff source.
#[derive(Debug)]
pub struct Page {
    pub file_name: String,
    pub roff: String,
}

const MANUAL: &str = "lbproxy manual";

fn source() -> String {
    format!("lbproxy {}", env!("CARGO_PKG_VERSION"))
}

/// The date in the page footer: `SOURCE_DATE_EPOCH` when set (packaging/build.sh sets it to the
/// commit's time, so the same commit gives the same pages), else today.
fn date() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let (year, month, day) = crate::history::time::civil_from_days(seconds / 86_400);
    format!("{year:04}-{month:02}-{day:02}")
}

/// lbproxy(8) and one page per visible subcommand, at any depth (lbproxy-serve(8), …), the way
/// git documents its subcommands: lbproxy(8) lists them by those names.
pub fn proxy_pages(command: clap::Command) -> Vec<Page> {
    let mut command = command.disable_help_subcommand(true);
    command.build(); // gives subcommands their display names: "lbproxy-serve"
    let mut pages = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub.clone(), &mut pages);
    }
    let mut main = render(&command, "8");
    main.push_str(&proxy_extra_sections(&command));
    pages.insert(
        0,
        Page {
            file_name: "lbproxy.8".to_owned(),
            roff: main,
        },
    );
    pages
}

fn subcommand_pages(command: clap::Command, pages: &mut Vec<Page>) {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub.clone(), pages);
    }
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned();
    let mut roff = render(&command, "8");
    roff.push_str(&see_also(&["lbproxy(8)", "lbproxy.toml(5)"]));
    pages.push(Page {
        file_name: format!("{name}.8"),
        roff,
    });
}

/// lbproxy-demo-api(1).
pub fn demo_api_page(command: clap::Command) -> Page {
    let mut roff = render(&command, "1");
    roff.push_str(&see_also(&["lbproxy(8)"]));
    Page {
        file_name: "lbproxy-demo-api.1".to_owned(),
        roff,
    }
}

/// lbproxy.toml(5), from the configuration reference in Markdown.
pub fn config_page(reference_markdown: &str) -> Page {
    let mut roff = Roff::new();
    roff.control("TH", ["lbproxy.toml", "5", &date(), &source(), MANUAL]);
    roff.control("SH", ["NAME"]);
    roff.text([roman("lbproxy.toml - lbproxy configuration file")]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold("/etc/lbproxy/lbproxy.toml")]);
    let mut page = roff.to_roff();
    page.push_str(".SH DESCRIPTION\n");
    page.push_str(&super::markdown::to_roff(reference_markdown));
    page.push_str(&see_also(&["lbproxy(8)", "systemd.exec(5)"]));
    Page {
        file_name: "lbproxy.toml.5".to_owned(),
        roff: page,
    }
}

fn render(command: &clap::Command, section: &str) -> String {
    let mut out = Vec::new();
    Man::new(command.clone())
        .section(section)
        .date(date())
        .source(source())
        .manual(MANUAL)
        .render(&mut out)
        .expect("rendering into a Vec cannot fail");
    String::from_utf8(out).expect("clap_mangen writes UTF-8")
}

fn proxy_extra_sections(command: &clap::Command) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/lbproxy/lbproxy.toml",
            "The configuration the lbproxy.service unit runs (see lbproxy.toml(5)). \
             Without -c, lbproxy uses a built-in default with the same content as the file \
             the packages install.",
        ),
        (
            "/usr/lib/systemd/system/lbproxy.service",
            "The proxy as a system service; lbproxy.socket for socket activation; \
             api@.service, one instance of the API behind it per instance number.",
        ),
        (
            "/usr/share/lbproxy/",
            "Examples (routes.toml, a drop-in that runs your own API as api@N) and monitoring files.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in [
        (
            "LBPROXY_LOG",
            "Log filter (tracing syntax), e.g. debug or lbproxy::access=info; default info.",
        ),
        ("RUST_LOG", "Used when LBPROXY_LOG is unset."),
        (
            "LBPROXY_DRIVER",
            "auto, io_uring or legacy: overrides runtime.driver.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(what)]);
    }
    let mut out = roff.to_roff();
    let mut refs: Vec<String> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("lbproxy-{}(8)", s.get_name()))
        .collect();
    refs.extend(
        ["lbproxy.toml(5)", "lbproxy-demo-api(1)", "systemctl(1)"]
            .iter()
            .map(std::string::ToString::to_string),
    );
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    out.push_str(&see_also(&refs));
    out
}

fn see_also(pages: &[&str]) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages.join(", "))]);
    roff.to_roff()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn proxy_page_lists_subcommands_by_page_name_and_adds_files() {
        let pages = proxy_pages(crate::cli::Cli::command());
        let main = &pages[0];
        assert_eq!(main.file_name, "lbproxy.8");
        assert!(main.roff.contains("\n.TH lbproxy 8 "), "{}", main.roff);
        assert!(main.roff.contains("lbproxy\\-serve(8)"), "{}", main.roff);
        assert!(main.roff.contains(".SH FILES"), "{}", main.roff);
        assert!(
            main.roff.contains("/etc/lbproxy/lbproxy.toml"),
            "{}",
            main.roff
        );
        let serve = pages.iter().find(|p| p.file_name == "lbproxy-serve.8");
        let serve = serve.expect("a page for lbproxy serve");
        assert!(serve.roff.contains("\\-\\-config"), "{}", serve.roff);
    }

    #[test]
    fn page_dates_are_calendar_dates() {
        assert_eq!(crate::history::time::civil_from_days(0), (1970, 1, 1));
        assert_eq!(crate::history::time::civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(crate::history::time::civil_from_days(20_454), (2026, 1, 1));
    }
}

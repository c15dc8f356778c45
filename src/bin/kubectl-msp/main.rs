//! `kubectl msp`: msp-operator for people, as a kubectl plugin.
//!
//! The operator's API is complete but spread over several kinds and many
//! conditions; customers and providers ask a few plain questions — what
//! may I accept, who manages my namespaces, who are my customers, may I
//! have access now. Each subcommand answers one, with the user's own
//! credentials (so RBAC and admission judge every step as they would for
//! kubectl), and says what to do when the answer is no.
//!
//! This file holds the command line (clap), the dispatch, and the exit
//! codes: 0 done, 1 refused or failed (the message says why and what to
//! do), 2 a usage error.

mod accept;
mod activate;
mod approve;
mod catalog;
mod cluster;
mod customers;
mod diff;
mod errors;
mod identity;
mod offers;
mod output;
mod providers;
mod status;

use clap::{Parser, Subcommand};
use msp_operator::api::ApprovalDecision;
use std::process::ExitCode;

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-msp",
    bin_name = "kubectl msp",
    version,
    about = "Managed service offers and delegations (msp-operator), in plain words",
    long_about = "Managed service offers and delegations (msp-operator), in plain words.

Customers browse the offers their tenant may accept, accept a plan knowing exactly what it grants, and see which providers manage their namespaces. Providers see their customers and ask for just-in-time access; approvers decide on it. Every request is made with your own credentials, so Kubernetes RBAC and msp-operator's admission policies judge it as they would for kubectl.

Examples:
  kubectl msp offers -n shop
  kubectl msp accept contoso/managed-ops basic -n shop
  kubectl msp providers -n shop
  kubectl msp customers -n contoso
  kubectl msp activate contoso-ops --role msp-operator:operator --duration 30m -n shop"
)]
struct Cli {
    #[command(flatten)]
    connect: cluster::ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = output::Format::Table)]
    output: output::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the offers and plans your tenant may accept.
    #[command(
        long_about = "List the offers and plans your tenant may accept: every Public plan, and the Private plans offered to your tenant by name.

The list comes from the namespace's OfferCatalog, which the operator fills for your tenant; it is created on first use (that needs edit rights in the namespace once; viewers can read it afterwards).

Example:
  kubectl msp offers -n shop --provider contoso"
    )]
    Offers(offers::OffersArgs),
    /// Accept a plan: show what it grants, ask, create the Delegation.
    #[command(long_about = "Accept a plan of an offer for some of your namespaces.

Looks the plan up in your catalog, prints exactly what it grants (each principal and role, just-in-time access and its terms, the namespaces), asks for confirmation, creates the Delegation and waits up to 30 seconds for the operator's answer: Ready, or the reason it was refused and how to fix it. Exits 1 when refused.

Example:
  kubectl msp accept contoso/managed-ops basic -n shop --namespaces shop,web --version 1.2.0")]
    Accept(accept::AcceptArgs),
    /// Show what accepting a Delegation's newer plan version would change.
    #[command(
        long_about = "Show what accepting the newest published version of a Delegation's plan would change: '+' grants it would add, '-' grants it would revoke, and the command that accepts it. Nothing changes until you accept.

Example:
  kubectl msp diff contoso-managed-ops-basic -n shop"
    )]
    Diff(diff::DiffArgs),
    /// List the service providers managing a namespace, and their roles.
    #[command(
        long_about = "List the service providers managing a namespace: each provider principal, its role, the offer, plan and version it holds them under, since when, and whether an update waits.

Reads the operator's RoleBindings and the Delegations behind them; whatever you may not read is left out with a note.

Example:
  kubectl msp providers -n shop
  kubectl msp providers -A -o json"
    )]
    Providers(providers::ProvidersArgs),
    /// List your customers: who accepted which plan, and whether it works.
    #[command(
        long_about = "List the customers of your offers (provider view): each customer tenant's Delegation, the plan and version it accepted, its namespaces, whether it is Ready (and why not), a pending update and its just-in-time activations.

Reads the CustomerDelegation records the operator keeps in the offer's namespace; no access to customer namespaces is needed.

Example:
  kubectl msp customers -n contoso --offer managed-ops"
    )]
    Customers(customers::CustomersArgs),
    /// Explain one Delegation in plain words.
    #[command(
        long_about = "Explain one Delegation: what it accepts, whether its grants are in place (or why it was refused, and the fix), each namespace, a waiting update, the provider's own role assignments and the just-in-time access in force. With -o json or -o yaml, print the Delegation itself.

Example:
  kubectl msp status contoso-managed-ops-basic -n shop"
    )]
    Status(status::StatusArgs),
    /// Ask for just-in-time access under a Delegation (provider side).
    #[command(
        long_about = "Ask for just-in-time access: create an Activation of an eligible role under a customer's Delegation, as yourself, and wait up to 30 seconds to learn whether it is granted, waiting for approvers, or refused.

Example:
  kubectl msp activate contoso-incident-response -n fabrikam-db --role msp-operator:operator --duration 1h --justification 'INC-4711: disk full' --principal Group/contoso:oncall"
    )]
    Activate(activate::ActivateArgs),
    /// Approve an Activation, as yourself or a group of yours.
    #[command(
        long_about = "Approve an Activation: add your approval (your user name, as yourself or as a group of yours that the plan or the customer names as approver) and show what it changed.

Example:
  kubectl msp approve disk-full-4711 -n fabrikam-db --principal Group/contoso:leads"
    )]
    Approve(approve::DecideArgs),
    /// Deny an Activation (final), as yourself or a group of yours.
    #[command(
        long_about = "Deny an Activation: add your denial (your user name, as yourself or as an approver group of yours). A denial is final.

Example:
  kubectl msp deny disk-full-4711 -n fabrikam-db --principal Group/fabrikam:dbas"
    )]
    Deny(approve::DecideArgs),
}

fn main() -> ExitCode {
    // Usage errors exit 2 and --help/--version 0, as clap does.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cluster = cluster::connect(&cli.connect).await?;
    let format = cli.output;
    match &cli.command {
        Command::Offers(args) => offers::run(&cluster, args, format).await,
        Command::Accept(args) => accept::run(&cluster, args).await,
        Command::Diff(args) => diff::run(&cluster, args, format).await,
        Command::Providers(args) => providers::run(&cluster, args, format).await,
        Command::Customers(args) => customers::run(&cluster, args, format).await,
        Command::Status(args) => status::run(&cluster, args, format).await,
        Command::Activate(args) => activate::run(&cluster, args).await,
        Command::Approve(args) => approve::run(&cluster, args, ApprovalDecision::Approve).await,
        Command::Deny(args) => approve::run(&cluster, args, ApprovalDecision::Deny).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere_and_bad_usage_is_a_usage_error() {
        let cli = Cli::try_parse_from([
            "kubectl-msp",
            "accept",
            "contoso/ops",
            "basic",
            "-n",
            "shop",
            "--namespaces",
            "a,b",
            "--acknowledge-workload-role",
            "x",
            "--acknowledge-workload-role",
            "y",
            "--yes",
            "--context",
            "prod",
        ])
        .unwrap();
        assert_eq!(cli.connect.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.connect.context.as_deref(), Some("prod"));
        match cli.command {
            Command::Accept(a) => {
                assert_eq!(a.namespaces, ["a", "b"]);
                assert_eq!(a.acknowledge_workload_roles, ["x", "y"]);
                assert!(a.yes);
            }
            other => panic!("{other:?}"),
        }
        let bad = Cli::try_parse_from(["kubectl-msp", "approve", "x", "--principal", "Robot/r2"])
            .unwrap_err();
        assert_eq!(bad.exit_code(), 2);
        let bad = Cli::try_parse_from(["kubectl-msp", "offers", "-o", "wide"]).unwrap_err();
        assert_eq!(bad.exit_code(), 2);
        let json = Cli::try_parse_from(["kubectl-msp", "-o", "json", "providers", "-A"]).unwrap();
        assert_eq!(json.output, output::Format::Json);
    }
}

//! Scenario 3: the web product page (gRPC, GraphQL and REST upstreams).

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        bin,
        plan,
        web_token,
        product_ids,
        rows,
        ..
    } = b;
    let (duration, rate, connections) = (args.duration, args.rate, args.connections);
    let web = Proc::spawn(
        "bff-web",
        &bin.join("bff-web"),
        &[],
        &bff_env(WEB_PORT),
        plan.bff_cpu,
    )?;
    wait_http(WEB_PORT, "/readyz", "bff-web").await?;
    let product = &product_ids[0];
    let page = Arc::new(vec![
        Target::get(addr(WEB_PORT), format!("/v1/products/{product}"))
            .header("authorization", &format!("Bearer {web_token}")),
    ]);
    let (s, cpu) = closed(Some(&web), &page, connections, duration).await?;
    rows.push(row(
        "3 web product page",
        "bff-web (gRPC+GraphQL+REST)",
        format!("closed ×{connections}"),
        &s,
        cpu,
        "",
    ));
    let (s, cpu) = open(Some(&web), &page, rate, duration).await?;
    rows.push(row(
        "3 web product page",
        "bff-web (gRPC+GraphQL+REST)",
        format!("open {rate}/s"),
        &s,
        cpu,
        "",
    ));
    Ok(())
}

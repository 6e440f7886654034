//! Scenario 4: the partner batch of 50 products.

use crate::bench::*;

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        bin,
        plan,
        partner_token,
        product_ids,
        rows,
        ..
    } = b;
    let (duration, rate, connections) = (args.duration, args.rate, args.connections);
    let partner = Proc::spawn(
        "bff-partner",
        &bin.join("bff-partner"),
        &[],
        &bff_env(PARTNER_PORT),
        plan.bff_cpu,
    )?;
    wait_http(PARTNER_PORT, "/readyz", "bff-partner").await?;
    let ids = &product_ids;
    let batch = Arc::new(vec![
        Target::get(
            addr(PARTNER_PORT),
            format!("/v2/products?ids={}", ids.join(",")),
        )
        .header("authorization", &format!("Bearer {partner_token}")),
    ]);
    let partner_rate = (rate / 4.0).max(1.0);
    let (s, cpu) = closed(Some(&partner), &batch, connections, duration).await?;
    rows.push(row(
        "4 partner batch of 50",
        "bff-partner",
        format!("closed ×{connections}"),
        &s,
        cpu,
        "",
    ));
    let (s, cpu) = open(Some(&partner), &batch, partner_rate, duration).await?;
    rows.push(row(
        "4 partner batch of 50",
        "bff-partner",
        format!("open {partner_rate}/s"),
        &s,
        cpu,
        "",
    ));
    Ok(())
}

//! The red team's short form (issue 12): every attack of `scripts/chaos/red-team`, with small
//! sizes, against the stack as shipped. Prints the attack → outcome table; fails when any attack
//! succeeded or could not be run to its end. The full form is `scripts/chaos/red-team`.

use oneclick_testkit::attacks;

#[test]
fn every_red_team_attack_fails_against_the_stack_as_shipped() {
    let outcomes = attacks::run_all(true);
    let table = attacks::table(&outcomes);
    println!("{table}");
    let succeeded: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.succeeded)
        .map(|o| o.name)
        .collect();
    assert!(
        !outcomes.is_empty() && succeeded.is_empty(),
        "attacks that succeeded: {succeeded:?}\n{table}"
    );
}

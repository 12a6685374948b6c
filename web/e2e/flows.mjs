// Steps the browser tests share: a new account through the app, pairing a real agent
// through the app's Pair screen.

import assert from "node:assert/strict";
import { PASSWORD, waitFor } from "./rig.mjs";

/** Registers `email` through the app's form; lands on the (empty) device list. */
export async function registerInApp(page, url, email) {
  await page.goto(url + "/#/register");
  await page.getByRole("heading", { name: "Create an account" }).waitFor();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "Your PCs" }).waitFor();
}

/**
 * Pairs `pc` (rig.startPc) by opening its pair URL — what its QR code holds — in a new tab
 * of `context`: the app's Pair screen, which asks this tab (no session yet) to sign in,
 * keeps the token through it, confirms and shows the PC's name and the matching number.
 * Checks the number is the one the agent printed. Returns { code, pairPage } (open).
 */
export async function pairInApp(rig, context, pc, email) {
  const pairing = await pc.pairing();
  assert.match(pairing.pair_url, /\/pair#token=/);
  const pairPage = await context.newPage();
  await pairPage.goto(pairing.pair_url);
  await pairPage.getByRole("heading", { name: "Sign in" }).waitFor();
  assert.ok(!pairPage.url().includes("token="), `the token is taken out of the address: ${pairPage.url()}`);
  await pairPage.getByLabel("Email").fill(email);
  await pairPage.getByLabel("Password").fill(PASSWORD);
  await pairPage.getByRole("button", { name: "Sign in" }).click();
  await pairPage.getByRole("button", { name: "Pair this PC" }).click();
  await pairPage.locator("#pair-code").waitFor();
  assert.equal((await pairPage.locator("#paired-name").textContent()).trim(), pc.name);
  const code = (await pairPage.locator("#pair-code").textContent()).trim();
  assert.match(code, /^\d{3} \d{3}$/);
  await pairPage.getByText("Check that your PC shows the same number").waitFor();
  await waitFor(`the agent to print the pairing code ${code}`, () => pc.agent.out.includes(code), 60_000, rig.procs);
  return { code, pairPage };
}

/** Signs in on the sign-in form the page shows. */
export async function signIn(page, email) {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
}

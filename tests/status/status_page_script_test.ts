/**
 * The status page's script is served as the source text of a TypeScript function (status_page_script.ts):
 * that text must be plain JavaScript wherever Deno runs it, and must stay inside its `<script>` element. The
 * browser test (status_page_browser_test.ts) runs it.
 */

import { standInStatusSource } from "../helpers/status_source.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { REFRESH_INTERVAL_MS, statusPage } from "../../src/status/status_page.ts";
import { statusPageScript } from "../../src/status/status_page_script.ts";
import { statusReport } from "../../src/status/status_report.ts";
import { statusNotices } from "../../src/status/status_notices.ts";

/** The text of the nonce-carrying script element of a page made for a small report. */
function servedScript(): string {
  const report = statusReport(standInStatusSource(), { now: () => 0 });
  const scripts = [
    ...statusPage(report, { nonce: "n0nce" }).matchAll(/<script nonce="n0nce">(.*?)<\/script>/gs),
  ];
  assertEquals(scripts.length, 1, "one script carries the nonce");
  return scripts[0][1];
}

Deno.test("the page's script is the function's source as JavaScript, given the refresh interval and the notices", () => {
  const text = servedScript();
  assertEquals(
    text,
    `(${statusPageScript.toString()})(${REFRESH_INTERVAL_MS}, ${statusNotices.toString()});`,
  );
  // A type annotation or declaration left in it would be a syntax error here (parsing does not run it).
  new Function(text);
  for (const marker of ["</script", "<!--", "<script"]) {
    assert(
      !text.toLowerCase().includes(marker),
      `the script must not contain ${marker}: it would end or confuse its element`,
    );
  }
});

Deno.test("under deno run too, the status page's script is JavaScript", async () => {
  const module = new URL("../../src/status/status_page_script.ts", import.meta.url).href;
  const notices = new URL("../../src/status/status_notices.ts", import.meta.url).href;
  const code = `const { statusPageScript } = await import(${JSON.stringify(module)});
const { statusNotices } = await import(${JSON.stringify(notices)});
new Function(statusPageScript.toString());
new Function("return " + statusNotices.toString());
console.log("parsed " + statusPageScript.toString().length);`;
  const probe = await Deno.makeTempFile({ prefix: "flexo-script-probe-", suffix: ".ts" });
  try {
    await Deno.writeTextFile(probe, code);
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-read", probe],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert(output.success, `deno run failed: ${stderr}`);
    assert(new TextDecoder().decode(output.stdout).startsWith("parsed "), stderr);
  } finally {
    await Deno.remove(probe);
  }
});

import assert from "node:assert/strict";
import {
  BEGIN_MARKER,
  CONFIG_DOC_PATH,
  configReference,
  END_MARKER,
  generatedSection,
  withGeneratedSection,
} from "../../scripts/config_reference.ts";
import {
  configObjectSchema,
  customRepoSchema,
  mirrorsAutoSchema,
  prefetchSchema,
} from "../../src/config/config_schema.ts";

const DOC_URL = new URL(`../../${CONFIG_DOC_PATH}`, import.meta.url);

/** The tables of a Markdown text: each a list of rows, each row a list of trimmed cells (header included). */
function tables(markdown: string): string[][][] {
  const result: string[][][] = [];
  let current: string[][] | undefined;
  for (const line of markdown.split("\n")) {
    if (!line.startsWith("|")) {
      current = undefined;
      continue;
    }
    if (current === undefined) {
      current = [];
      result.push(current);
    }
    if (/^\|[\s|-]+\|$/.test(line)) continue; // the separator row
    current.push(line.slice(1, -1).split(" | ").map((cell) => cell.trim()));
  }
  return result;
}

/** The row of `table` whose key cell is `key` (in code font). */
function row(table: string[][], key: string): string[] {
  const found = table.find((cells) => cells[0] === `\`${key}\``);
  assert.ok(found, `no row for ${key}`);
  return found;
}

/** The schema keys a table must list: top-level keys show the two tables as [mirrors_auto] and [[custom_repo]]. */
function shownKeys(shape: Record<string, unknown>): string[] {
  return Object.keys(shape).map((key) =>
    key === "mirrors_auto" || key === "prefetch"
      ? `[${key}]`
      : key === "custom_repo"
      ? "[[custom_repo]]"
      : key
  );
}

const SHAPES: [string, Record<string, { description?: string }>][] = [
  ["top level", configObjectSchema.shape],
  ["[mirrors_auto]", mirrorsAutoSchema.shape],
  ["[prefetch]", prefetchSchema.shape],
  ["[[custom_repo]]", customRepoSchema.in.shape],
];

Deno.test("configReference() equals the generated section of docs/configuration.md", async () => {
  const doc = await Deno.readTextFile(DOC_URL);
  assert.equal(
    generatedSection(doc),
    configReference(),
    `The configuration reference in ${CONFIG_DOC_PATH} is out of date: run \`deno task config-reference\`.`,
  );
});

Deno.test("configReference() has one table each for the top level, [mirrors_auto] and [[custom_repo]] with every schema key", () => {
  const found = tables(configReference());
  assert.equal(found.length, SHAPES.length);
  SHAPES.forEach(([table, shape], index) => {
    assert.deepEqual(found[index][0], ["key", "default", "environment variable", "description"]);
    const keys = found[index].slice(1).map((cells) => cells[0].replace(/`/g, ""));
    assert.deepEqual(keys, shownKeys(shape), `keys of the ${table} table`);
  });
});

Deno.test("every schema key has a non-empty description, and the reference shows it", () => {
  const found = tables(configReference());
  SHAPES.forEach(([table, shape], index) => {
    for (const [key, schema] of Object.entries(shape)) {
      const description = schema.description?.trim() ?? "";
      assert.notEqual(description, "", `${table} key ${key} has no .describe(...) text`);
      const shown = shownKeys({ [key]: null })[0];
      assert.equal(row(found[index], shown)[3], description, `${table} key ${key}`);
    }
  });
});

Deno.test("configReference() shows defaults as TOML values and optional keys as not set", () => {
  const [top, auto, prefetch, repo] = tables(configReference());
  assert.equal(row(top, "port")[1], "`7878`");
  assert.equal(row(top, "cache_directory")[1], '`"/var/cache/flexo/pkg"`');
  assert.equal(row(top, "listen_ip_address")[1], '`["127.0.0.1"]`');
  assert.equal(row(top, "mirrors_predefined")[1], "`[]`");
  assert.equal(row(top, "max_cache_size")[1], "not set");
  assert.equal(row(top, "low_speed_limit_formatted")[1], "not set");
  assert.equal(row(auto, "ipv6")[1], "`false`");
  assert.equal(row(auto, "max_score")[1], "`2.5`");
  assert.match(row(auto, "mirrors_status_json_endpoint_fallbacks")[1], /^`\["https:\/\/.+"\]`$/);
  assert.equal(row(repo, "name")[1], "required");
  assert.equal(row(prefetch, "interval")[1], '`"6h"`');
});

Deno.test("configReference() names each environment variable with the encoding configLayerFromEnv accepts", () => {
  const [top, auto, prefetch, repo] = tables(configReference());
  assert.equal(row(top, "port")[2], "`FLEXO_PORT` (a TOML value)");
  assert.equal(row(top, "cache_directory")[2], "`FLEXO_CACHE_DIRECTORY` (text, taken as it is)");
  assert.equal(row(top, "allowed_clients")[2], "`FLEXO_ALLOWED_CLIENTS` (a TOML array or comma-separated)");
  assert.equal(row(top, "log_level")[2], "`FLEXO_LOG` or `FLEXO_LOG_LEVEL` (text, taken as it is)");
  assert.match(row(top, "[[custom_repo]]")[2], /^`FLEXO_CUSTOM_REPO` \(space-separated `name@url` entries/);
  assert.match(row(top, "[mirrors_auto]")[2], /FLEXO_MIRRORS_AUTO_<KEY>/);
  assert.equal(row(auto, "ipv4")[2], "`FLEXO_MIRRORS_AUTO_IPV4` (a TOML value)");
  assert.match(row(top, "[prefetch]")[2], /FLEXO_PREFETCH_<KEY>/);
  assert.equal(row(prefetch, "max_parallel")[2], "`FLEXO_PREFETCH_MAX_PARALLEL` (a TOML value)");
  assert.equal(
    row(auto, "allowed_countries")[2],
    "`FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES` (a TOML array or comma-separated)",
  );
  assert.match(row(repo, "url")[2], /FLEXO_CUSTOM_REPO/);
});

Deno.test("withGeneratedSection() replaces only the text between the markers; generatedSection() reads it back", () => {
  const doc = `# Title\n\nbefore\n\n${BEGIN_MARKER}\nold text\n${END_MARKER}\n\nafter\n`;
  const updated = withGeneratedSection(doc, "new text");
  assert.equal(updated, `# Title\n\nbefore\n\n${BEGIN_MARKER}\nnew text\n\n${END_MARKER}\n\nafter\n`);
  assert.equal(generatedSection(updated), "new text");
  assert.equal(withGeneratedSection(updated, "new text"), updated);
});

Deno.test("generatedSection() and withGeneratedSection() say which markers to add when they are missing", () => {
  for (const doc of ["no markers", `${END_MARKER}\n${BEGIN_MARKER}\n`, `${BEGIN_MARKER}\nonly the start\n`]) {
    assert.throws(() => generatedSection(doc), /needs the lines <!-- BEGIN .* Add them/);
    assert.throws(() => withGeneratedSection(doc, "x"), /needs the lines <!-- BEGIN .* Add them/);
  }
});

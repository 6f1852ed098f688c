/**
 * The real entry point, run the way the CDK CLI runs it (CDK_OUTDIR +
 * CDK_CONTEXT_JSON), without the CLI, without AWS credentials: a missing
 * allowedCidr fails synthesis with a clear message; a complete one writes
 * a template. Also pins the offline settings of cdk.json.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CDK_JSON, INFRA_DIR } from './helpers';

function runApp(context: Record<string, unknown>) {
  const outdir = mkdtempSync(join(tmpdir(), 'infra-cli-test-'));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    CDK_OUTDIR: outdir,
    CDK_CONTEXT_JSON: JSON.stringify({ ...CDK_JSON.context, ...context }),
    CDK_VALIDATION: 'false',
  };
  const result = spawnSync(process.execPath, ['--import', 'tsx', join('bin', 'infra.ts')], {
    cwd: INFRA_DIR,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { ...result, outdir };
}

describe('bin/infra.ts', () => {
  it('without allowedCidr: exits 1 and says which parameter is missing and how to pass it', () => {
    const run = runApp({ region: 'ca-central-1' });
    try {
      assert.equal(run.error, undefined);
      assert.equal(run.status, 1, `stdout: ${run.stdout}\nstderr: ${run.stderr}`);
      assert.match(run.stderr, /error: missing required context parameter "allowedCidr"/);
      assert.match(run.stderr, /-c allowedCidr=/);
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'a configuration error should not print a stack trace');
      assert.ok(!existsSync(join(run.outdir, 'EfsProxyS3Files.template.json')));
    } finally {
      rmSync(run.outdir, { recursive: true, force: true });
    }
  });

  it('with allowedCidr and region: writes the template, no credentials needed', () => {
    const run = runApp({ region: 'ca-central-1', allowedCidr: '203.0.113.0/24' });
    try {
      assert.equal(run.status, 0, `stdout: ${run.stdout}\nstderr: ${run.stderr}`);
      const template = JSON.parse(readFileSync(join(run.outdir, 'EfsProxyS3Files.template.json'), 'utf8'));
      const types = Object.values(template.Resources as Record<string, { Type: string }>).map((r) => r.Type);
      for (const type of ['AWS::S3Files::FileSystem', 'AWS::S3Files::MountTarget', 'AWS::ElasticLoadBalancingV2::LoadBalancer']) {
        assert.ok(types.includes(type), `${type} missing`);
      }
      const manifest = JSON.parse(readFileSync(join(run.outdir, 'manifest.json'), 'utf8'));
      assert.equal(manifest.missing, undefined, 'the app asked for context only AWS can provide');
      assert.equal(manifest.artifacts.EfsProxyS3Files.environment, 'aws://unknown-account/ca-central-1');
    } finally {
      rmSync(run.outdir, { recursive: true, force: true });
    }
  });
});

describe('cdk.json', () => {
  it('runs the app with tsx and turns off CLI notices and telemetry (no network calls)', () => {
    assert.equal(CDK_JSON.app, 'npx tsx bin/infra.ts');
    assert.equal(CDK_JSON.notices, false);
    assert.equal(CDK_JSON.context['cli-telemetry'], false);
  });

  it('pins no account, region or allowedCidr (they come from -c or the environment)', () => {
    for (const key of ['allowedCidr', 'region', 'account', 'mountTargetIp']) {
      assert.equal(CDK_JSON.context[key], undefined, key);
    }
  });
});

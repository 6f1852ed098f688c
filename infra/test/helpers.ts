/**
 * Offline synthesis for the tests: the same context the CLI would pass
 * (cdk.json's feature flags plus -c parameters), CloudFormation validation
 * off (CDK_VALIDATION=false), no account, no AWS calls.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { IConstruct } from 'constructs';
import { buildStack } from '../lib/app';
import { S3FilesMountStack } from '../lib/s3files-mount-stack';

process.env.CDK_VALIDATION = 'false';

export const INFRA_DIR = join(__dirname, '..');

const cdkJson = JSON.parse(readFileSync(join(INFRA_DIR, 'cdk.json'), 'utf8')) as {
  context: Record<string, unknown>;
  [key: string]: unknown;
};
export const CDK_JSON = cdkJson;

/** What `-c allowedCidr=203.0.113.0/24 -c region=ca-central-1` gives. */
export const BASE_CONTEXT: Record<string, unknown> = { allowedCidr: '203.0.113.0/24', region: 'ca-central-1' };

export interface Synthesized {
  app: App;
  stack: S3FilesMountStack;
  template: Template;
}

/**
 * Builds the app as `cdk synth` would. `context` overrides BASE_CONTEXT; a
 * key set to undefined removes it. `env` stands in for process.env.
 */
export function synth(context: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = {}): Synthesized {
  const merged: Record<string, unknown> = { ...cdkJson.context, ...BASE_CONTEXT, ...context };
  for (const key of Object.keys(merged)) if (merged[key] === undefined) delete merged[key];
  const app = new App({ context: merged, builtinCloudFormationValidation: false });
  const stack = buildStack(app, env);
  return { app, stack, template: Template.fromStack(stack) };
}

let defaultSynth: Synthesized | undefined;
/** The default deployment (public subnet), synthesized once per test file. */
export function synthDefault(): Synthesized {
  defaultSynth ??= synth();
  return defaultSynth;
}

/** Logical id of an L1 resource, or of an L2 construct's default child. */
export function logicalId(construct: IConstruct): string {
  const element = construct instanceof CfnElement ? construct : construct.node.defaultChild;
  if (!(element instanceof CfnElement)) throw new Error(`${construct.node.path} has no CloudFormation element`);
  return Stack.of(construct).getLogicalId(element);
}

type CfnResourceJson = { Type: string; Properties?: Record<string, any>; DependsOn?: string[]; [key: string]: any };

/** The one resource of a type (fails unless there is exactly one). */
export function onlyResource(template: Template, type: string): { id: string; resource: CfnResourceJson } {
  const found = Object.entries(template.findResources(type));
  if (found.length !== 1) throw new Error(`expected exactly one ${type}, found ${found.length}`);
  const [id, resource] = found[0];
  return { id, resource: resource as CfnResourceJson };
}

export function resourcesOfType(template: Template, type: string): Array<{ id: string; resource: CfnResourceJson }> {
  return Object.entries(template.findResources(type)).map(([id, resource]) => ({ id, resource: resource as CfnResourceJson }));
}

/** Flattens a policy statement's Action (string or list) to a sorted list. */
export function actionsOf(statement: { Action: string | string[] }): string[] {
  return (Array.isArray(statement.Action) ? statement.Action : [statement.Action]).slice().sort();
}

#!/usr/bin/env node
/**
 * CDK app entry point: `npx cdk deploy -c region=ca-central-1 -c allowedCidr=198.51.100.7/32`.
 * See ../README.md for every context parameter.
 */
import { App } from 'aws-cdk-lib';
import { buildStack } from '../lib/app';
import { ConfigError } from '../lib/config';

const app = new App();
try {
  buildStack(app);
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`\nerror: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}
app.synth();

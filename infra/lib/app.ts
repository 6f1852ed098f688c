/**
 * Builds the app's one stack from context parameters. Shared by bin/infra.ts
 * and the tests, so the tests exercise exactly what `cdk synth` runs.
 */
import { App } from 'aws-cdk-lib';
import { configFromContext } from './config';
import { S3FilesMountStack } from './s3files-mount-stack';

export function buildStack(app: App, env: NodeJS.ProcessEnv = process.env): S3FilesMountStack {
  const config = configFromContext((key) => app.node.tryGetContext(key), env);
  return new S3FilesMountStack(app, config.stackName, {
    stackName: config.stackName,
    // Region only, never an account: with an account the VPC would look up
    // availability zones through AWS at synth time. Without a region the
    // stack is environment-agnostic and deploys to the CLI's region.
    env: config.region ? { region: config.region } : undefined,
    description: 'efs-proxy: S3 Files file system reachable from outside AWS through an NLB on TCP 2049',
    allowedCidrs: config.allowedCidrs,
    vpcCidr: config.vpcCidr,
    mountTargetIp: config.mountTargetIp,
    privateSubnets: config.privateSubnets,
    prefix: config.prefix,
    clientRootAccess: config.clientRootAccess,
    clientDirectS3Read: config.clientDirectS3Read,
  });
}

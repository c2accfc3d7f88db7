#!/usr/bin/env node
import { installFatalHandler, main } from '../dist/src/cli/main.js';

installFatalHandler();
process.exitCode = await main(process.argv.slice(2));

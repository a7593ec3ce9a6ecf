import { vmSuite } from './suite.js';

vmSuite('hyperstart');

import { vmSuite } from './suite.js';

vmSuite('kata');

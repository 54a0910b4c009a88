export interface User {
  id: string;
  email: string;
  created_at: string;
}
export interface Database {
  id: string;
  name: string;
  engine: string;
  plan: string;
  status: string;
  host: string;
  port: number;
  database: string;
  username: string;
  password?: string;
  uri?: string;
  created_at: string;
  size_limit_bytes?: number;
}
export interface Usage {
  size_bytes: number;
  connections: number;
  measured_at: string;
}
export interface Plan {
  id: string;
  resource_type: string;
  name: string;
  price_minor: number;
  currency: string;
  interval: string;
  limits: Record<string, unknown>;
}
export interface Subscription {
  id: string;
  resource_type: string;
  resource_id: string;
  plan: string;
  status: string;
  current_period_start: string;
  current_period_end: string;
}
export interface InvoiceLine {
  subscription_id: string;
  description: string;
  period_start: string;
  period_end: string;
  amount_minor: number;
}
export interface Invoice {
  id: string;
  status: string;
  amount_minor: number;
  currency: string;
  period_start: string;
  period_end: string;
  due_at: string;
  lines: InvoiceLine[];
}
export interface StoredObject {
  key: string;
  size: number;
  etag: string;
  content_type: string;
  updated_at: string;
}
export interface Space {
  quota_bytes: number;
  used_bytes: number;
  object_count: number;
}
export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  key?: string;
  created_at: string;
  last_used_at?: string | null;
}
export interface Items<T> {
  items: T[];
  next_cursor?: string | null;
}

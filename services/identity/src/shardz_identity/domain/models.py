"""Identity's request and response shapes (CONTRACT section 4)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, EmailStr, Field

from shardz_common.openapi import NO_NUL


class Credentials(BaseModel):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=10, max_length=1024)


class LoginBody(BaseModel):
    email: str = Field(max_length=320, pattern=NO_NUL)
    password: str = Field(max_length=1024)


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class UserOut(BaseModel):
    id: UUID
    email: str
    created_at: datetime


class MeOut(UserOut):
    status: str
    role: str


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str


class SignupOut(TokenPair):
    user: UserOut


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)


class ApiKeyOut(BaseModel):
    id: UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None


class ApiKeyCreated(BaseModel):
    id: UUID
    name: str
    prefix: str
    key: str
    created_at: datetime


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


class IntrospectBody(BaseModel):
    key: str = Field(max_length=200)


class IntrospectOut(BaseModel):
    key_id: UUID
    user_id: UUID
    role: str

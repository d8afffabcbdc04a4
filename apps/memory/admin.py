"""Django admin for apps.memory: a memory browser whose search box runs the real hybrid
query, embedding status per model, re-embed and delete actions, and a transcript viewer.

Memories are written by agents through the API; here they are read, re-embedded or
deleted. Embedding-model saves go through the same service as the API and `reembed`.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import Case, FloatField, JSONField, Value, When
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from apps.memory import selectors, services
from apps.memory.models import EmbeddingModel, MemoryEntry, MemoryJob, Transcript
from apps.memory.search import memory_search_staff
from apps.access.admin_history import ChangeHistoryMixin
from daarion.infra.errors import DaarionError
from daarion.infra.json_widget import JsonEditorWidget


@admin.register(MemoryEntry)
class MemoryEntryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "agent_id",
        "microdao_id",
        "channel_id",
        "kind",
        "lang",
        "excerpt",
        "search_score",
        "embedding_status",
        "embedding_model",
        "version",
        "occurred_at",
    )
    list_filter = ("kind", "lang", "embedding_status", "embedding_model", "agent_id")
    search_fields = ("text",)  # replaced by the hybrid query in get_search_results
    search_help_text = "Hybrid search (vector + full text), as agents query; filter by agent to search one scope."
    date_hierarchy = "occurred_at"
    actions = ["reembed_selected", "delete_selected_memories"]
    readonly_fields = [f.name for f in MemoryEntry._meta.fields if f.name not in ("search", "embedding")] + ["vector_preview"]
    exclude = ("search", "embedding")
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # memories come from agents, through the API

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def _ranks(self, request) -> dict[str, float] | None:
        """The hybrid query's scores for the search box's term, computed once per request."""
        term = request.GET.get("q", "").strip()
        if not term:
            return None
        if not hasattr(request, "_memory_ranks"):
            hits = memory_search_staff(query=term, agent_id=request.GET.get("agent_id__exact"), limit=200)
            request._memory_ranks = {hit.id: hit.score for hit in hits}
        return request._memory_ranks

    def get_queryset(self, request):
        # Not super(): it orders before we can annotate the score to order by.
        queryset = MemoryEntry.objects.defer("embedding")
        ranks = self._ranks(request)
        if ranks is not None:
            # Annotated here, before the changelist orders by it.
            queryset = queryset.annotate(
                hybrid_score=Case(
                    *[When(id=i, then=Value(score)) for i, score in ranks.items()], default=Value(0.0), output_field=FloatField()
                )
            )
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    @admin.display(description="text")
    def excerpt(self, obj: MemoryEntry) -> str:
        return obj.text if len(obj.text) <= 120 else obj.text[:117] + "..."

    @admin.display(description="score")
    def search_score(self, obj: MemoryEntry):
        value = getattr(obj, "hybrid_score", None)
        return "" if value is None else f"{value:.3f}"

    @admin.display(description="embedding (first values)")
    def vector_preview(self, obj: MemoryEntry) -> str:
        row = MemoryEntry.objects.filter(pk=obj.pk).values_list("embedding", flat=True).first()
        if row is None:
            return "-"
        values = list(row)
        return f"{len(values)} dims: " + ", ".join(f"{v:.3f}" for v in values[:8]) + ", ..."

    def get_search_results(self, request, queryset, search_term):
        ranks = self._ranks(request)
        if not search_term.strip() or ranks is None:
            return queryset, False
        return queryset.filter(id__in=list(ranks)), False

    def get_ordering(self, request):
        if request.GET.get("q", "").strip():
            return ["-hybrid_score", "id"]
        return super().get_ordering(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "embedding_counts": _status_table()}
        return super().changelist_view(request, extra_context=extra_context)

    @admin.action(description="Re-embed selected memories (with the active model)")
    def reembed_selected(self, request, queryset):
        count = services.memory_retry_failed(entry_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} memories queued for embedding.", messages.SUCCESS)

    @admin.action(description="Delete selected memories (forget)", permissions=["delete"])
    def delete_selected_memories(self, request, queryset):
        count = 0
        for entry in queryset:
            services.memory_delete(entry=entry)
            count += 1
        self.message_user(request, f"{count} memories deleted.", messages.SUCCESS)


def _status_table() -> list[dict]:
    """Rows of model -> {pending, ready, failed} for the changelist header."""
    table: dict[str, dict] = {}
    for row in selectors.embedding_status_counts():
        name = row["embedding_model"] or "(none yet)"
        table.setdefault(name, {"model": name, "pending": 0, "ready": 0, "failed": 0})[row["embedding_status"]] = row["count"]
    return list(table.values())


@admin.register(EmbeddingModel)
class EmbeddingModelAdmin(ChangeHistoryMixin, admin.ModelAdmin):
    list_display = ("name", "backend", "dimensions", "is_active", "ready", "pending", "failed")
    fields = ("name", "backend", "dimensions", "options", "is_active")
    actions = ["activate", "activate_and_reembed"]
    formfield_overrides = {JSONField: {"widget": JsonEditorWidget(kind="object")}}  # options

    def get_readonly_fields(self, request, obj=None):
        return ("name", "backend", "is_active") if obj else ("is_active",)

    def _counts(self, obj: EmbeddingModel) -> dict:
        if not hasattr(self, "_count_cache"):
            self._count_cache: dict[str, dict[str, int]] = {}
            for row in selectors.embedding_status_counts():
                self._count_cache.setdefault(row["embedding_model"], {})[row["embedding_status"]] = row["count"]
        return self._count_cache.get(obj.name, {})

    def changelist_view(self, request, extra_context=None):
        self.__dict__.pop("_count_cache", None)
        return super().changelist_view(request, extra_context)

    @admin.display(description="ready")
    def ready(self, obj):
        return self._counts(obj).get("ready", 0)

    @admin.display(description="pending")
    def pending(self, obj):
        return self._counts(obj).get("pending", 0)

    @admin.display(description="failed")
    def failed(self, obj):
        return self._counts(obj).get("failed", 0)

    def save_model(self, request, obj, form, change):
        try:
            saved = services.embedding_model_save(
                name=obj.name, backend=obj.backend, dimensions=obj.dimensions, options=obj.options or {}
            )
        except DaarionError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        if obj.is_active:
            self.message_user(request, "The active model cannot be deleted; activate another first.", messages.ERROR)
            return
        super().delete_model(request, obj)

    @admin.action(description="Activate (new memories and queries use it)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.ERROR)
            return
        services.embedding_model_activate(name=queryset.get().name)
        self.message_user(request, "Activated. Existing memories keep their vectors until re-embedded.", messages.SUCCESS)

    @admin.action(description="Activate and re-embed every memory in the background")
    def activate_and_reembed(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.ERROR)
            return
        job = services.reembed_start(model_name=queryset.get().name)
        self.message_user(request, f"Re-embedding started: job {job.id}.", messages.SUCCESS)


@admin.register(MemoryJob)
class MemoryJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "agent_id", "progress", "created_at", "finished_at")
    list_filter = ("kind", "status")
    readonly_fields = ("id", "kind", "status", "agent_id", "params", "result", "error", "created_at", "updated_at", "finished_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a job's record is its audit trail

    @admin.display(description="progress")
    def progress(self, obj):
        result = obj.result or {}
        if "total" in result:
            return f"{result.get('done', 0)}/{result['total']}"
        return ""


@admin.register(Transcript)
class TranscriptAdmin(admin.ModelAdmin):
    list_display = ("session_id", "agent_id", "version", "entry_count", "size_bytes", "updated_at")
    search_fields = ("session_id", "agent_id")
    list_filter = ("agent_id",)
    fields = ("session_id", "agent_id", "version", "entry_count", "size_bytes", "created_at", "updated_at", "conversation")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="entries")
    def conversation(self, obj: Transcript):
        def _text(entry: dict) -> str:
            message = entry.get("message")
            if isinstance(message, dict):
                message = message.get("content")
            if not isinstance(message, str):
                message = json.dumps(
                    message
                    if message is not None
                    else {k: v for k, v in entry.items() if k not in ("type", "uuid", "parentUuid")},
                    ensure_ascii=False,
                )
            return message if len(message) <= 500 else message[:497] + "..."

        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td style='white-space:pre-wrap'>{}</td></tr>",
            ((e.get("type", ""), e.get("uuid", ""), e.get("parentUuid") or "", _text(e)) for e in obj.entries),
        )
        return format_html(
            "<table><thead><tr><th>type</th><th>uuid</th><th>parent</th><th>content</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )
